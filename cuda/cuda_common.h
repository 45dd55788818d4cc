// Private to cuda/: error-check macros, the backend context, launch helpers and the
// op implementations each .cu file contributes to the table.
#ifndef SWQ_CUDA_COMMON_H
#define SWQ_CUDA_COMMON_H
#include <stdio.h>
#include <stdlib.h>
#include <cuda.h>   // (CUtensorMap: the driver's function itself comes through the runtime's entry point)
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <cublasLt.h>
#include "model/backend.h"
#include "cuda/device_common.cuh"

#define CUDA_CHECK(call)                                                                   \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess) {                                                           \
            fprintf(stderr, "%s:%d: CUDA error: %s (%s)\n", __FILE__, __LINE__,            \
                    cudaGetErrorString(e_), #call);                                        \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#define CUBLAS_CHECK(call)                                                                 \
    do {                                                                                   \
        cublasStatus_t s_ = (call);                                                        \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                 \
            fprintf(stderr, "%s:%d: cuBLAS error: %s (%s)\n", __FILE__, __LINE__,          \
                    cublasGetStatusString(s_), #call);                                     \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

// After every kernel launch: catches bad launch configurations at the launch site.
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

enum { CU_FP32 = 0, CU_TF32 = 1, CU_BF16 = 2 };

// Bytes held by class (an allocation's name up to its first '.', "parameters", "activations",
// ...; the backend's own: bf16 copies, scratch, cuBLAS workspace), now and at the peak.
#define CU_MEM_CLASSES 24
struct cu_mem {
    char name[CU_MEM_CLASSES][32];
    size_t cur[CU_MEM_CLASSES], at_peak[CU_MEM_CLASSES];
    int n;
};
// bf16: kept copy of a frozen buffer (bf_elems elements: a weight's own, plus room for a LoRA
// adapter's A rows after them, see cu_weight_ext; a_src, a_rows, a_ok: the A those rows hold).
// An expanded record (x_*) is a scratch that dequantize_rows fills from codes: only its bf16 copy
// is written, with the same room for A's rows; while x_active that copy holds the x_rows x x_cols
// weight, and the floats only where x_float_ok (made from the codes when something reads them).
#define CU_EXT_ROWS_MAX 32   // A rows room after an expanded weight: lora_ext_rows(LORA_UP_MAX_R)
struct cu_alloc_rec {
    void *p;
    size_t bytes;
    int cls;   // memory class (cu_mem)
    void *bf16;
    size_t bf_elems;
    const float *a_src;
    size_t a_elems;
    int a_ok;
    void *a_rows;                  // where those rows went (the K-extended copy's), a_ld apart, a_r of them
    int a_ld, a_r;
    int expanded, x_active, x_float_ok, x_rows, x_cols, x_bits;
    const void *x_codes;
    const float *x_scales;
    void *kx;                      // the weight's rows K-extended for an adapter (cu_weight_kext), kx_ld apart
    size_t kx_elems;
    int kx_ld;
};
// A bf16 copy slot: kept across writes of its source (valid = holds the source's values), so
// a recorded graph finds the same memory on every replay.
struct cu_bf16_entry {
    const float *src;
    size_t n, cap;                 // floats copied ([src, src + n)), bf16 elements the slot holds
    int ld_src, ld_bf;             // ld_bf > 0: rows of ld_src floats stored ld_bf apart (padded)
    void *bf;
    unsigned long long used;
    unsigned char valid, async, in_graph;   // async: from cudaMallocAsync; in_graph: a recording uses it
    unsigned char sole;            // src was not written (cu_bf16_sole): while valid, never evicted
    unsigned char fread;           // src's floats were read (cu_sole_in) while this copy was valid
    int want_ld;                   // a reader asked for rows this far apart (cu_bf16_want_rows), kept across slots
};
// A recorded run of ops (graph_begin/graph_end) and the copy table as it left it.
struct cu_graph {
    unsigned long long key, used;
    cudaGraphExec_t exec;
    struct cu_bf16_entry *snap;
    int n_snap;
};
#define CU_MAX_GRAPHS 8
// A cuBLASLt GEMM with an epilogue (kind: CU_LT_BIAS or CU_LT_DGELU), planned once per shape (ok = 0:
// no algorithm, or it failed once: the caller's other path is used for that shape).
enum { CU_LT_BIAS = 0, CU_LT_DGELU = 1, CU_LT_GELU_AUX_BIAS = 2, CU_LT_BIAS_BF16 = 3 };
struct cu_lt_plan {
    int kind, m, n, k, lda, ldb, ldc, ok;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
};
struct cu_tl_mark { cudaEvent_t ev; const char *phase, *op, *part; };
struct cu_tl_sum { const char *phase, *op, *part; double ms; long n; };

// A linear's output left in the padded GEMM output scratch (pad) instead of packed into out's
// floats: out's floats are stale while out != NULL. In bf16 (f32 0) for the LM head without adapter
// or bias, as in plain training (a 13 GB pass at B=32 T=1024; bf16 as the peer's autocast leaves
// its logits), and for the head with its adapter inside the GEMM (lora_head_kext), whose logits
// stay in floats (f32 1) only with SWQ_CUDA_HEAD_F32=1.
// xent_kl reads the padded rows directly; any other reader of out's floats (cu_sole_in), and any
// reuse of the scratch, converts it first (cu_lazy_materialize); a write to out drops it
// (cu_bf16_invalidate).
struct cu_lazy {
    float *out;
    const void *o;
    int ldo, rows, cols, f32;
};

// A layernorm forward left pending (cu_layernorm_fwd, bf16, its output only as a bf16 copy): the
// linear that reads it next may do it in its own first launch (kext_input); anything else issues
// it first (cu_ln_flush: every op's start, transfers, synchronization, graph boundaries).
struct cu_ln_pend {
    const float *out;              // the output's floats (the copy's key); NULL: none pending
    __nv_bfloat16 *ob;             // its bf16 copy, rows ldb apart
    int ldb, N, C, v4;
    float *mean, *rstd;
    const float *inp, *w, *b;
};

typedef struct {
    int device;
    int precision;                 // CU_*
    int sm_count;
    cudaStream_t stream;
    cublasHandle_t cublas;
    cublasComputeType_t compute;   // for every GEMM
    int *argmax_dev;               // grown on demand
    size_t argmax_cap;             // bytes
    // bf16 mode: bf16 copies of GEMM operands, kept while their float source is unchanged.
    // Every op invalidates the copies its outputs overlap (cu_bf16_invalidate), so a buffer is
    // converted once per write however many GEMMs read it (forward activations are reused by
    // the backward). Least recently used copies go beyond bfc_limit bytes.
    struct cu_bf16_entry *bfc;
    int n_bfc, cap_bfc;
    size_t bfc_bytes, bfc_limit;   // bytes of all slots, valid or not
    unsigned long long bfc_clock, bfc_pin;   // entries used at or after bfc_pin are not evicted
    float *lw;                     // w + s Bm A of the LoRA linear in hand (lora_linear_*), grown on demand
    size_t lw_cap;                 // bytes
    int no_flash;                  // SWQ_CUDA_FLASH=0: attention by batched GEMMs in bf16 mode too
    int flash_rows, flash_keys;    // query rows a flash forward block, keys a backward block (64, 128; 0: flash_block picks)
    int wgmma, wgmma_able;         // the sm_90a kernels run here (cu_tmap_bf16 and their bodies; SWQ_CUDA_WGMMA=0: off)
    int lazy_head;                 // a head output may stay pending (cu_lazy); SWQ_CUDA_LAZY_HEAD=0 turns it off
    int body_kext;                 // bf16 body linears with adapter by one K-extended GEMM; SWQ_CUDA_BODY_KEXT=0 turns it off
    int head_f32;                  // the LoRA head's logits left in floats (SWQ_CUDA_HEAD_F32=1), not bf16
    struct cu_lazy lazy;
    struct cu_ln_pend lnp;         // pending layernorm (cu_ln_flush)
    struct cu_ln_pend ln_take;     // the one the linear now being issued took from lnp (kext_input)
    int ln_fuse;                   // SWQ_CUDA_LN_FUSE=0: no layernorm is left pending
    int lora_merge;                // SWQ_CUDA_LORA_MERGE=1: merge the adapter into the weight (default off)
    int lora_grads_off;            // SWQ_CUDA_LORA_GRADS=0: dB and dA by two cuBLAS GEMMs
    int f32_fuse;                  // fp32 and tf32 linears through lora_up_pack (SWQ_CUDA_F32_FUSE=0: off)
    int dout_grads_oc;             // du and dB by one pass over dout from this many output columns on
                                   // (SWQ_CUDA_DOUT_GRADS_OC; 0 or less: never)
    int sole_off;                  // SWQ_CUDA_SOLE=0: the MLP's hidden activations are written as floats too
    int weight_copies;             // bf16: cached weights as reals with kept bf16 copies (default; 11% faster a
                                   // CDT step), or (SWQ_CUDA_WEIGHT_COPIES=0) as codes expanded into bf16 before
                                   // each use (2.5 GiB less at B=8 T=512)
    int skinny_fp32;               // inside lora_linear_fwd: tf32 mode runs products with a dim <= 32 in fp32
    // CUDA graphs (SWQ_CUDA_GRAPHS, default on): a run the caller marks with graph_begin/end is
    // recorded the second time in a row it comes with the same key, then replayed
    int graphs_on, capturing;
    unsigned long long graph_last_key, capture_key, graph_clock;
    struct cu_graph graphs[CU_MAX_GRAPHS];
    int n_graphs;
    long n_graph_captures, n_graph_replays;
    void *cublas_ws;               // cuBLAS workspace (set explicitly: graph capture allocates none)
    size_t cublas_ws_bytes;
    cublasLtHandle_t lt;           // cuBLASLt (bias epilogues), sharing the workspace (one stream)
    struct cu_lt_plan *lt_plans;
    int n_lt, cap_lt, lt_off;      // lt_off: SWQ_CUDA_LT=0
    // the last `zero` of a scratch buffer, not yet issued: the next op either takes it over (a
    // "+=" into exactly that buffer becomes "=": no memset, no read of zeros) or issues it first
    void *zp;
    size_t zbytes;
    // the last `zero` of a large buffer (the teacher sums), not yet issued: xent_kl takes it over
    // where it adds into exactly that buffer (its sums then start from zero, read from nowhere);
    // an op touching it any other way (cu_bf16_invalidate, cu_sole_in), a recording's start or end,
    // a synchronization or a host transfer issues it first; freeing the buffer drops it
    void *zl;
    size_t zl_bytes;
    // bf16 mode: the CDT step's teacher sums as fp16 (cu_xent_teacher_half): th, rows th_ld apart,
    // holds th_src's [th_rows, th_cols] floats times th_scale, which are stale while th_valid.
    // teacher_f32: SWQ_CUDA_TEACHER_F32=1, the sums stay in floats.
    void *th;
    size_t th_cap;
    const float *th_src;
    int th_rows, th_cols, th_ld, th_valid, teacher_f32;
    float th_scale;
    float *pad;                    // a GEMM output with padded rows (cu_lora_linear_fwd), grown on demand
    size_t pad_cap;                // bytes
    void *kext_x, *kext_w;         // the K-extended bf16 operands of lora_head_kext (kext_x: lora_body_kext's too)
    size_t kext_x_cap, kext_w_cap; // bytes
    void **ptrs;                   // device pointer arrays of the (batch, head)-batched GEMMs
    size_t ptrs_cap;               // bytes
    // every live allocation (for the peak-memory count) and the frozen ones: buffers allocated
    // under a "qcache." name are written once, then only read, so their bf16 copy is kept
    struct cu_alloc_rec *allocs, *frozen;
    const char *a_lo, *a_hi;       // a span holding every frozen record's adapter rows source (a_src)
    int n_allocs, cap_allocs, n_frozen, cap_frozen;
    size_t mem_cur, mem_peak;
    struct cu_mem mem;             // mem_cur by class, and as it was at mem_peak
    // SWQ_CUDA_PROFILE=1: every GEMM synchronized and timed (conversion, GEMM by shape class),
    // summary on stderr when the backend is destroyed
    int prof;
    cudaEvent_t ev[3];
    double prof_ms[4], prof_flop[3];   // [0] bf16 conversion, [1] GEMMs min(m,n,k) <= 32, [2] attention-batched, [3] other
    long prof_calls[4];
    // SWQ_CUDA_TIMELINE=1: an event recorded on the stream at the start of every op (and around
    // every GEMM and operand conversion), nothing synchronized; the intervals between consecutive
    // events are read back when the stream is synchronized anyway (downloads) and summed per
    // (phase, op, part), so the step runs as it does without them (see timeline_report)
    int tl, ht;                    // events on; host timing of synchronizations on (=host: only that)
    struct cu_tl_mark *tl_m;
    int tl_n, tl_cap;
    const char *tl_phase, *tl_op;
    struct cu_tl_sum *tl_s;
    int tl_ns, tl_cap_s;
    double tl_host_busy, tl_host_wait, tl_host_t0;   // host seconds enqueueing / waiting in synchronizations
} cuda_ctx;

static inline cuda_ctx *CTX(swq_backend *be) { return (cuda_ctx *)be->ctx; }
static inline cudaStream_t STREAM(swq_backend *be) { return ((cuda_ctx *)be->ctx)->stream; }

// Milliseconds per call of issue() on stream s: `warmup` untimed calls, then `reps` between two
// events (what issue() queues must go to s).
template <typename F>
static inline double cu_time_ms(cudaStream_t s, int warmup, int reps, F issue) {
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    for (int r = -warmup; r < reps; r++) {
        if (r == 0) CUDA_CHECK(cudaEventRecord(e0, s));
        issue();
    }
    CUDA_CHECK(cudaEventRecord(e1, s));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    return ms / reps;
}

// Grid for a grid-stride loop over n elements (capped: the loop covers the rest).
static inline unsigned grid_for(size_t n, int block) {
    size_t g = (n + block - 1) / block;
    if (g > 65536u * 8u) g = 65536u * 8u;
    return g == 0 ? 1u : (unsigned)g;
}

// Column sums over rows (bias gradients, layernorm's dw/db): blocks (32, 8) of 128 columns, 4 a
// thread, rows split over threadIdx.y and blockIdx.y. The grid: about eight blocks per SM, each
// row slice (rows_per) at least 64 rows.
static inline dim3 col_sum_grid(int sm_count, int N, int C, int *rows_per) {
    int tiles = (C + 127) / 128;
    int want = (8 * sm_count + tiles - 1) / tiles;
    int max_splits = (N + 63) / 64;
    int splits = want < max_splits ? want : max_splits;
    if (splits < 1) splits = 1;
    *rows_per = (N + splits - 1) / splits;
    splits = (N + *rows_per - 1) / *rows_per;
    return dim3(tiles, splits);
}
// Column-major GEMM on float buffers in the backend's precision (bf16: operands converted):
// C[m,n] = alpha * op(A) op(B) + beta * C, batched with strides when batch > 1.
void cu_gemm(swq_backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
             float alpha, const float *A, int lda, long long sA, const float *B, int ldb,
             long long sB, float beta, float *C, int ldc, long long sC, int batch);

// GEMM over nb x nh matrices, matrix (b, h) of X at X + b*sbX + h*shX (elements): one
// pointer-array batched call (attention: every batch index and head at once).
void cu_gemm_bh(swq_backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                const float *A, int lda, long long sbA, long long shA, const float *B, int ldb, long long sbB,
                long long shB, float beta, float *C, int ldc, long long sbC, long long shC, int nb, int nh);
// bf16 mode: convert the n floats at p now (kept until p is written), so GEMMs on sub-ranges of
// p find them; a no-op in the other modes.
void cu_bf16_prefetch(swq_backend *be, const float *p, size_t n);
// bf16 mode: the bf16 copy of the n floats at p (made now if there is none); NULL in the others.
const void *cu_bf16_copy(swq_backend *be, const float *p, size_t n);
// Whether attention runs as fused (flash) kernels for this head size: bf16 mode, hs = 64; att
// then holds per-row log-sum-exps, not probabilities.
int cu_flash_attention(swq_backend *be, int C, int NH);
// bf16 mode: a fresh copy-table entry for the n floats at src, for the caller to fill with
// their bf16 values on the stream (src must hold the same values in float too); NULL otherwise.
void *cu_bf16_slot(swq_backend *be, const float *src, size_t n);
// bf16 mode, w a frozen weight [OC, IC] (a quantized-weight cache entry), 0 < r <= rx <=
// CU_EXT_ROWS_MAX: its kept bf16 copy followed by rx rows, A's r rows [r, IC] in bf16 and zeros:
// [w ; A ; 0], rows *ld apart: the K-extended copy where w has one (cu_weight_kext), else the plain
// one (*ld = IC). The A rows are rewritten whenever A has been written since (or is another
// buffer). NULL when w is not frozen or while a recording is made and the copy would have to grow.
const void *cu_weight_ext(swq_backend *be, const float *w, int OC, int IC, const float *A, int r, int rx, int *ld);
// bf16 mode, w a frozen weight [OC, IC] (not expanded from codes): a kept bf16 copy of it with its
// rows ld > IC apart (ld a multiple of 8), the columns past IC left to the caller (a K-extended GEMM
// operand: lora_body_kext writes the adapter's there before every use), with room for
// CU_EXT_ROWS_MAX rows after it (cu_weight_ext's A rows: the backward then reads this copy, and w
// needs no other). Made once; NULL when w is not frozen, or while a recording is made and it does
// not exist yet.
__nv_bfloat16 *cu_weight_kext(swq_backend *be, const float *w, int OC, int IC, int ld);
// The valid copy of src (made by its producer) is the only form of the values: the floats at
// src were not written (xent_kl's gradient with grad 2, lora_linear_bwd_gelu's dpre, the MLP's
// hidden activations), so it is never evicted while valid.
void cu_bf16_sole(swq_backend *be, const float *src);
// Before an op reads the floats of [p, p + bytes) as floats: sole copies overlapping them are
// converted back into their floats (and become plain copies). Every op-table entry calls it for
// the inputs its kernels read as floats, and download does, so a sole copy is never observable.
void cu_sole_in(swq_backend *be, const void *p, size_t bytes);
// dst (rows x cols packed floats) = src (rows of cols bf16, lds apart)
void cu_bf16_rows_to_float(swq_backend *be, float *dst, const __nv_bfloat16 *src, int lds, size_t rows, int cols);
void cu_lazy_materialize(swq_backend *be);   // out's floats written from pad; nothing pending after
// bf16 mode: src's bf16 copy as rows of `cols` at least min_ld apart, the columns past cols free
// for the caller (a K-concatenated GEMM operand): the valid padded copy src has, or a new one
// (converted now) when src has no valid copy at all; NULL when it has another kind of copy
// (converting again would cost more than the concatenation saves) or is frozen.
__nv_bfloat16 *cu_bf16_rows_padded(swq_backend *be, const float *src, int rows, int cols, int min_ld, int *ld);
// dst (bf16, rows ldd apart) = the rows x cols floats at src, each row zero-filled from cols to width.
void cu_bf16_convert_rows(swq_backend *be, void *dst, int ldd, const float *src, int rows, int cols, int width);
// Room a producer leaves after each row of a gradient's bf16 copy, for the adapter's du columns.
#define CU_ROWS_SPARE 32
// bf16 mode: C[m,n] (fp32) = A^T B + bias (+ R: R[m,n], ld ldc, may be NULL) (bias per row of C: per
// output channel), A [k, m] and B [k, n] bf16 column-major (lda, ldb), by cuBLASLt with the bias in
// the epilogue. 0 (nothing done) when there is no such plan for the shape or the bias is not
// 16-byte aligned.
int cu_gemm_bias_lt(swq_backend *be, int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                    const float *bias, const float *R, float *C, int ldc);
// The same with D[m,n] in bf16 (ld ldd, fp32 accumulation, rounded once), without R; the bias added
// as its bf16 copy (cuBLASLt takes no other with bf16 D; so does the peer's autocast).
int cu_gemm_bias_bf16_lt(swq_backend *be, int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                         const float *bias, void *D, int ldd);
// bf16 mode: D[m,n] (bf16, column-major, ldd) = gelu'(aux) * (A B), A [m, k] and B [k, n] bf16
// column-major (lda, ldb), aux [m, n] bf16 (ld m: the GELU's input), by cuBLASLt with the DGELU
// epilogue. 0 (nothing done) when there is no such plan for the shape (or SWQ_CUDA_LT=0).
int cu_gemm_dgelu_lt(swq_backend *be, int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                     const void *aux, void *D, int ldd);
// bf16 mode: aux[m,n] (bf16, ld m) = A^T B + bias (its bf16 copy) and D[m,n] (bf16, ld ldd >= m) = gelu(aux), A [k, m] and
// B [k, n] bf16 column-major (lda, ldb), by cuBLASLt with the GELU_AUX_BIAS epilogue. 0 (nothing
// done) when there is no such plan for the shape (or SWQ_CUDA_LT=0).
int cu_gemm_gelu_lt(swq_backend *be, int m, int n, int k, const void *A, int lda, const void *B, int ldb,
                    const float *bias, void *aux, void *D, int ldd);
// bf16 mode: the valid copy of exactly rows x cols floats at src, plain (*ld = cols) or with rows
// padded (*ld their distance), or NULL.
const __nv_bfloat16 *cu_bf16_rows_of(swq_backend *be, const float *src, int rows, int cols, int *ld);
// A reader that would take src's copy with rows ld apart (a K-extended GEMM's operand, the
// columns past src's for its own) asks for that: the largest asked is cu_bf16_want_ld's answer,
// for src's producer (rows of cols floats) to make its next copy so (cols where none was asked,
// or the answer would not keep rows 16-byte aligned).
void cu_bf16_want_rows(swq_backend *be, const float *src, int ld);
int cu_bf16_want_ld(swq_backend *be, const float *src, int cols);
// The valid sole copy (cu_bf16_sole) holding [src, src + n), its rows *ld apart (ld_src
// elements of src each: *ld_src), or NULL.
const __nv_bfloat16 *cu_bf16_sole_of(swq_backend *be, const float *src, size_t n, int *ld_src, int *ld);
// bf16 mode, r a multiple of 8 up to 32: dB[OC, r] += s dout^T u and dA[r, IC] += du^T inp in one
// launch, from bf16 operands with rows ldd, ldu, ldi, lddu apart (16-byte aligned: else 0, nothing
// done; also 0 with SWQ_CUDA_LORA_GRADS=0); duf: du's bf16 values also written as floats [N, r]
// (or NULL). dB NULL: dA only. cuda/ops_lora_grads.cu
int cu_lora_weight_grads(swq_backend *be, float *dB, const void *doutb, int ldd, const void *ub, int ldu, float *dA,
                         const void *inpb, int ldi, const void *dub, int lddu, float *duf, int N, int OC, int IC, int r,
                         float s);
// fp32 and tf32 mode, r up to 32: the same two products from the floats (rows ldd, ldu, ldi, lddu
// apart) in one launch; dB or dA NULL: the other only. 0 (nothing done) in bf16 mode or with
// SWQ_CUDA_LORA_GRADS=0. cuda/ops_lora_grads.cu
int cu_lora_weight_grads_f32(swq_backend *be, float *dB, const float *dout, int ldd, const float *u, int ldu,
                             float *dA, const float *inp, int ldi, const float *du, int lddu, int N, int OC, int IC,
                             int r, float s);
// bf16 mode, as cu_lora_weight_grads (the caller takes it for OC >= dout_grads_oc): du = s dout Bm
// (floats [N, r], overwritten) and dB[OC, r] += s dout^T u in one pass over dout (bf16, rows ldd
// apart); Bm [OC, r] and u [N, r] (rows ldu apart) bf16; du 16-byte and dB 8-byte aligned. 0 where
// not taken (nothing done).
int cu_lora_dout_grads(swq_backend *be, float *du, float *dB, const void *doutb, int ldd, const void *bmb,
                       const void *ub, int ldu, int N, int OC, int r, float s);
// A 2-D TMA tensor map of bf16 rows (outer rows of inner elements, ld elements apart; p and ld*2
// 16-byte multiples) with boxes of box_inner (64: 128 bytes) x box_outer and the 128-byte swizzle;
// 0 where it cannot be made (no driver entry point, or the driver refuses).
int cu_tmap_bf16(CUtensorMap *m, const void *p, unsigned long long inner, unsigned long long outer,
                 unsigned long long ld, unsigned box_inner, unsigned box_outer);
// 1 where this build's sm_90a kernels have bodies for the current device (ops_attention.cu)
int cu_wgmma_compiled(void);
// C[m,n] (fp32) = alpha op(A) op(B) + beta C with A, B already bf16 (column-major, as cu_gemm).
void cu_gemm_bf16(swq_backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                  const void *A, int lda, const void *B, int ldb, float beta, float *C, int ldc);
// the same product written in bf16 (beta 0): fp32 accumulation, one rounding
void cu_gemm_bf16_out(swq_backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                      const void *A, int lda, const void *B, int ldb, __nv_bfloat16 *C, int ldc);
// The same, but only where a stale unpadded copy from src exists (someone read src in bf16 after
// its last write; of any length, as a buffer shared by adapters of different ranks is read): a
// producer writes the copy while it writes src, and a buffer no one reads in bf16 gets none. NULL
// otherwise.
void *cu_bf16_slot_wanted(swq_backend *be, const float *src, size_t n);
int cu_bf16_wanted(swq_backend *be, const float *src, size_t n);   // whether it would give one
// The same, and *sole = 1 where the producer may write only the copy (then marking it with
// cu_bf16_sole): no op read src's floats while the last copy was valid (SWQ_CUDA_SOLE=0: never).
// A reader of floats that comes after all the same gets them back (cu_sole_in), and the next
// copy is not sole.
void *cu_bf16_slot_auto(swq_backend *be, const float *src, size_t n, int *sole);
// The same for rows x ld floats at src, stored with rows ld_bf apart (ld_bf >= ld, a multiple
// of 8: 16-byte aligned rows for the GEMMs; ld_bf = ld: a plain copy); the GEMMs that read src
// with leading dimension ld use it with ld_bf.
void *cu_bf16_slot_padded(swq_backend *be, const float *src, int rows, int ld, int ld_bf);
// cu_bf16_slot_auto for rows x cols floats stored with rows ld_bf apart (ld_bf = cols: plain); the
// last copy may have been plain or padded.
void *cu_bf16_slot_auto_rows(swq_backend *be, const float *src, int rows, int cols, int ld_bf, int *sole);
// A row length padded for aligned GEMM rows (a multiple of 64).
static inline int cu_pad_ld(int n) { return (n + 63) & ~63; }
// Drop the bf16 copies overlapping [p, p + bytes); bytes 0: the whole allocation holding p.
void cu_bf16_invalidate(swq_backend *be, const void *p, size_t bytes);

// Issue the pending zero (cu_zero defers one), before anything else reads or writes memory.
void cu_zero_flush(swq_backend *be);
// A backend-owned scratch *p of at least `bytes` (contents undefined), grown when too small:
// the old one is freed (recordings dropped first), the new one counted in the memory figures.
// Out of memory ends the program with one line naming `what`.
void *cu_scratch(swq_backend *be, void **p, size_t *cap, size_t bytes, const char *what);
// Before freeing device memory a recording may use: drops every recording (an internal error
// while one is being made).
void cu_before_free(swq_backend *be, const char *what);

// SWQ_CUDA_TIMELINE: mark the start of an op (phase and op name: string literals) or of a part
// of the op in hand (a GEMM, an operand conversion, "outside GEMMs"); no-ops when off.
void cu_tl_op(swq_backend *be, const char *phase, const char *op);
void cu_tl_part(swq_backend *be, const char *part);
// ---- ops (one .cu file each group) ----
void cu_add(swq_backend *be, void *out, const void *a, const void *b, size_t n);
void cu_accumulate(swq_backend *be, void *dst, const void *src, size_t n);
void cu_scale(swq_backend *be, void *x, double s, size_t n);
void cu_sumsq(swq_backend *be, double *acc, const void *x, size_t n);
void cu_gelu_fwd(swq_backend *be, void *out, const void *inp, size_t n);
// overwrite: dinp = (it was zero: the pending zero of cu_zero taken over) instead of +=
void cu_gelu_bwd(swq_backend *be, void *dinp, const void *inp, const void *dout, size_t n, int overwrite);
void cu_adamw(swq_backend *be, void *param, const void *grad, void *m, void *v, size_t n,
              double lr, double b1, double b2, double eps, double wd, int t, double grad_scale);

void cu_encoder_fwd(swq_backend *be, void *out, const int *tok, const void *wte, const void *wpe,
                    int B, int T, int C);
void cu_encoder_bwd(swq_backend *be, void *dwte, void *dwpe, const void *dout, const int *tok,
                    int B, int T, int C);
void cu_gather_rows(swq_backend *be, void *out, const void *in, const int *idx, int P, int C);
void cu_scatter_add_rows(swq_backend *be, void *dst, const void *src, const int *idx, int P, int C);
void cu_get_column(swq_backend *be, void *out, const void *in, int N, int K, int c);
void cu_add_to_column(swq_backend *be, void *dst, const void *src, int N, int K, int c);

void cu_layernorm_fwd(swq_backend *be, void *out, void *mean, void *rstd, const void *inp,
                      const void *w, const void *b, int N, int C);
// Issues the pending layernorm (lnp), or the one the current linear took (ln_take), if any.
void cu_ln_flush(swq_backend *be);
void cu_ln_take_flush(swq_backend *be);
// The fused kernel's C (a multiple of 128 up to 1024 with an instantiation), else 0.
int cu_ln_fused_v4(int C);
void cu_layernorm_bwd(swq_backend *be, void *dinp, void *dw, void *db, const void *dout,
                      const void *inp, const void *w, const void *mean, const void *rstd, int N, int C);

void cu_quantize_rows(swq_backend *be, void *out, const void *in, int rows, int cols, int bits);
void cu_quantize_rows_codes(swq_backend *be, void *codes, void *scales, const void *in, int rows, int cols, int bits);
void cu_dequantize_rows_bf16(swq_backend *be, void *out, const void *codes, const void *scales, int rows, int cols,
                             int bits);
void cu_dequantize_rows(swq_backend *be, void *out, const void *codes, const void *scales, int rows, int cols,
                        int bits);

void cu_matmul_fwd(swq_backend *be, void *out, const void *inp, const void *w, const void *bias,
                   int N, int IC, int OC, double scale, int accumulate);
// dinp_zero: dinp holds zeros (a pending zero taken over): its GEMM writes instead of adding.
void cu_matmul_bwd(swq_backend *be, void *dinp, void *dw, void *dbias, const void *dout,
                   const void *inp, const void *w, int N, int IC, int OC, double scale, int dinp_zero);

// act != NULL: also act = gelu(out) (the fused pass writes both where it runs); res != NULL: out = res +
// the linear (lora_linear_res_fwd)
void cu_lora_linear_fwd(swq_backend *be, void *out, void *act, void *u, const void *inp, const void *w, const void *bias,
                        const void *A, const void *Bm, int N, int IC, int OC, int r, double s, const void *res);
void cu_lora_linear_bwd(swq_backend *be, void *dinp, void *dw, void *dbias, void *dA, void *dB, void *du,
                        const void *dout, const void *inp, const void *u, const void *w, const void *A,
                        const void *Bm, int N, int IC, int OC, int r, double s, int dinp_zero);
// The op table's lora_linear_bwd_gelu: dpre = gelu'(pre) * (dout w + du A), the rest as above.
void cu_lora_linear_bwd_gelu(swq_backend *be, void *dpre, void *scratch, const void *pre, void *dw, void *dbias,
                             void *dA, void *dB, void *du, const void *dout, const void *inp, const void *u,
                             const void *w, const void *A, const void *Bm, int N, int IC, int OC, int r, double s);

void cu_attention_fwd(swq_backend *be, void *out, void *att, const void *qkv, int B, int T, int C, int NH);
void cu_attention_bwd(swq_backend *be, void *dqkv, void *scratch, const void *dout, const void *qkv, const void *out,
                      const void *att, int B, int T, int C, int NH);

// zin (NULL: logits' floats) holds the logits to read, rows ldz apart (a lazy head's output): in
// floats if zf32, else in bf16; grad 1 needs zin NULL. nzero: nS is taken as zeros (a pending zero
// taken over) and written whole, not read. thalf: the teacher sums go through their fp16 copy
// (cu_xent_teacher_half said so).
void cu_xent_kl(swq_backend *be, void *logits, const void *zin, int zf32, int ldz, const int *target, const int *len,
                const void *tS, const void *tH, int n_teachers, double beta,
                void *nS, void *nH, int nzero, int thalf, double *acc, double weight, double grad_scale, int grad,
                int P, int V);
// bf16 mode, xent_kl on bf16 logits (zb) with a kept row: whether its teacher sums go through their
// fp16 copy (half the bytes of floats; then the caller neither reads tS's floats nor drops nS's
// copies): the first config's sums into a pending zero (nzero), a later config's into the sums the
// copy holds, or the last config's read of them. 0: floats (SWQ_CUDA_TEACHER_F32=1: always). Called
// with the first sums (no tS, an nS), it also makes the copy's scratch in the modes whose LM logits
// come in bf16, even where it answers 0, so that no later step allocates it.
int cu_xent_teacher_half(swq_backend *be, int zb, const void *tS, const void *nS, int nzero, int P, int V);
// An op reads (write 0) or writes [lo, hi): fp16 teacher sums overlapping it go back into their floats
// first (not where a write covers them all), and the copy is dropped.
void cu_teacher_half_meets(swq_backend *be, const char *lo, const char *hi, int write);
void cu_argmax_rows(swq_backend *be, int *out_host, const void *logits, int P, int V);
#endif
