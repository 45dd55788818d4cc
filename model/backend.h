// The op table: every numeric operation of the model goes through one of these
// function pointers, implemented by the CPU reference (backend_cpu.c, in float
// and in double) and by CUDA (cuda/). Model code never touches element data.
//
// Conventions
//  - Buffers (`void *`) live in backend memory and hold elements of the
//    backend's real type (be->real_size bytes: 4 = float, 8 = double; CUDA may
//    use bf16 for compute internally but stores params/grads as float).
//  - Index buffers (`const int *`) are int32 in backend memory.
//  - Loss/norm accumulators (`double *acc`) are doubles in backend memory.
//  - "+=" means the op accumulates into its output; "=" overwrites.
//  - A NULL output pointer means "not needed": skip it.
//  - Weight matrices are [OC, IC] row-major (out = inp @ W^T), as llm.c.
#ifndef SWQ_BACKEND_H
#define SWQ_BACKEND_H
#include <stddef.h>

typedef struct swq_backend swq_backend;
struct swq_backend {
    const char *name;     // "cpu", "cpu-f64", "cuda"
    size_t real_size;     // bytes per element of real buffers
    void *ctx;            // backend private state

    // ---- memory ----
    // alloc never returns NULL: on failure it prints "<what>: cannot allocate N bytes" and exits(1).
    void *(*alloc)(swq_backend *be, size_t bytes, const char *what);
    void (*free)(swq_backend *be, void *p);
    void (*upload)(swq_backend *be, void *dst, const float *src, size_t n);     // host float -> real
    void (*download)(swq_backend *be, float *dst, const void *src, size_t n);   // real -> host float
    void (*upload_i32)(swq_backend *be, int *dst, const int *src, size_t n);
    void (*download_f64)(swq_backend *be, double *dst, const double *src, size_t n);
    void (*zero)(swq_backend *be, void *dst, size_t bytes);                     // memset 0 on raw bytes
    void (*copy)(swq_backend *be, void *dst, const void *src, size_t n);        // n reals
    void (*synchronize)(swq_backend *be);
    void (*destroy)(swq_backend *be);   // frees ctx and be (swq_backend_destroy calls it)

    // ---- recorded op sequences (optional: NULL where a backend has none, as the CPU) ----
    // For a run of ops fully determined by `key` (shapes, buffer addresses, scalar arguments,
    // precision configs) with no transfer or synchronization inside: graph_begin returns 1 if
    // the backend ran its recording of that run itself (the caller skips issuing the ops), or
    // 0, and then the caller issues the ops and calls graph_end. A backend may record the run
    // while the ops are issued (CUDA graphs, on the second run in a row with the same key) and
    // replay it on later calls with that key; freeing any buffer drops every recording.
    int (*graph_begin)(swq_backend *be, unsigned long long key);
    void (*graph_end)(swq_backend *be);

    // ---- element-wise ----
    void (*add)(swq_backend *be, void *out, const void *a, const void *b, size_t n);   // out = a + b
    void (*accumulate)(swq_backend *be, void *dst, const void *src, size_t n);          // dst += src
    void (*scale)(swq_backend *be, void *x, double s, size_t n);                        // x *= s
    void (*sumsq)(swq_backend *be, double *acc, const void *x, size_t n);               // acc[0] += sum x^2

    // ---- embeddings ----
    // out[b,t,:] = wte[tok[b,t],:] + wpe[t,:]
    void (*encoder_fwd)(swq_backend *be, void *out, const int *tok, const void *wte, const void *wpe,
                        int B, int T, int C);
    // dwte[tok[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:]   (either may be NULL)
    void (*encoder_bwd)(swq_backend *be, void *dwte, void *dwpe, const void *dout, const int *tok,
                        int B, int T, int C);

    // ---- layernorm (eps 1e-5) ----
    // out = (inp-mean)*rstd*w + b per row; mean[N], rstd[N] saved (=) for backward
    void (*layernorm_fwd)(swq_backend *be, void *out, void *mean, void *rstd, const void *inp,
                          const void *w, const void *b, int N, int C);
    // dinp += ..., dw += ..., db += ...   (dw, db may be NULL)
    void (*layernorm_bwd)(swq_backend *be, void *dinp, void *dw, void *db, const void *dout,
                          const void *inp, const void *w, const void *mean, const void *rstd, int N, int C);

    // ---- fake quantization ----
    // Per-row symmetric MinMax: for each row r, a = max|in[r,:]| / (2^(bits-1)-1),
    // out[r,c] = a * round(in[r,c]/a) (round half away from zero); a row of zeros stays zero.
    // bits >= 32: out = in (a copy; out may equal in). Used for weights (rows = output channels),
    // activations (rows = tokens) and biases (rows = 1). Gradients pass straight through (STE),
    // so there is no backward op.
    void (*quantize_rows)(swq_backend *be, void *out, const void *in, int rows, int cols, int bits);
    // The same quantization kept compact (a frozen weight quantized once, used every step): for
    // 2 <= bits <= 16, codes[r,c] = round(in[r,c]/a_r) as int8 (bits <= 8) or int16 (swq_code_bytes),
    // scales[r] = a_r (a real; 0 for a row of zeros, whose codes are 0).
    void (*quantize_rows_codes)(swq_backend *be, void *codes, void *scales, const void *in, int rows, int cols,
                                int bits);
    // out[r,c] = scales[r] * codes[r,c] (=): the values quantize_rows gives for the input the codes
    // were made from (equal; a zero may lose its sign).
    void (*dequantize_rows)(swq_backend *be, void *out, const void *codes, const void *scales, int rows, int cols,
                            int bits);
    // 1 where the backend keeps its own copies of "qcache." buffers (CUDA bf16: the GEMMs' bf16
    // weights): the model then caches quantized weights as reals, not as codes it would expand
    // before every use.
    int keeps_weight_copies;

    // ---- linear ----
    // out[N,OC] (= or += if accumulate) scale * inp[N,IC] @ w[OC,IC]^T (+ bias[OC] if non-NULL)
    void (*matmul_fwd)(swq_backend *be, void *out, const void *inp, const void *w, const void *bias,
                       int N, int IC, int OC, double scale, int accumulate);
    // dinp += scale * dout @ w; dw += scale * dout^T @ inp; dbias += sum_rows dout (unscaled)
    void (*matmul_bwd)(swq_backend *be, void *dinp, void *dw, void *dbias, const void *dout,
                       const void *inp, const void *w, int N, int IC, int OC, double scale);

    // ---- linear with a low-rank adapter (the switchable linear's three products) ----
    // out[N,OC] = inp @ w^T + bias + s * u @ Bm^T, u[N,r] = inp @ A^T (=, saved for backward);
    // A is [r,IC], Bm is [OC,r], bias may be NULL. A backend may form w + s Bm A first (same
    // math, other rounding).
    void (*lora_linear_fwd)(swq_backend *be, void *out, void *u, const void *inp, const void *w,
                            const void *bias, const void *A, const void *Bm, int N, int IC, int OC, int r,
                            double s);
    // Optional fusion (NULL: the caller issues lora_linear_fwd, then gelu_fwd(act, out)): the same
    // out and u, and act[N,OC] = gelu(out) (=), in one op (the MLP's first linear).
    void (*lora_linear_gelu_fwd)(swq_backend *be, void *out, void *act, void *u, const void *inp, const void *w,
                                 const void *bias, const void *A, const void *Bm, int N, int IC, int OC, int r,
                                 double s);
    // Optional fusion (NULL: the caller issues lora_linear_fwd into a buffer of its own, then
    // add(out, res, that)): out[N,OC] = res + (the same linear) (=), u as above; a residual
    // branch's last linear and the residual add in one op.
    void (*lora_linear_res_fwd)(swq_backend *be, void *out, const void *res, void *u, const void *inp, const void *w,
                                const void *bias, const void *A, const void *Bm, int N, int IC, int OC, int r,
                                double s);
    // du[N,r] = s * dout @ Bm (=, scratch); dinp += dout @ w + du @ A; dA += du^T @ inp;
    // dB += s * dout^T @ u; dw += dout^T @ inp; dbias += sum_rows dout   (dinp, dw, dbias may be NULL)
    void (*lora_linear_bwd)(swq_backend *be, void *dinp, void *dw, void *dbias, void *dA, void *dB, void *du,
                            const void *dout, const void *inp, const void *u, const void *w, const void *A,
                            const void *Bm, int N, int IC, int OC, int r, double s);
    // Optional fusion (NULL: the caller zeroes scratch, issues lora_linear_bwd with dinp = scratch,
    // zeroes dpre, then gelu_bwd(dpre, pre, scratch)): the backward of a linear whose input was
    // gelu(pre) (the MLP's second linear), its input gradient passed back through the GELU:
    // dpre[N,IC] = gelu'(pre) * (dout @ w + du @ A) (=, not +=); du, dA, dB, dw, dbias as
    // lora_linear_bwd. dpre only goes on as the dout of a linear's backward (as xent_kl's grad = 2:
    // a backend may keep it only in the form those read); scratch [N,IC] is workspace.
    void (*lora_linear_bwd_gelu)(swq_backend *be, void *dpre, void *scratch, const void *pre, void *dw, void *dbias,
                                 void *dA, void *dB, void *du, const void *dout, const void *inp, const void *u,
                                 const void *w, const void *A, const void *Bm, int N, int IC, int OC, int r, double s);

    // ---- attention (causal, qkv packed [B,T,3C], heads of C/NH) ----
    // out[B,T,C] =; att: what the backward needs (=): the softmax probabilities [B,NH,T,T] on the
    // CPU; a backend that recomputes them (flash attention) may keep less there, e.g. per-row
    // log-sum-exps, so only the backend that wrote att reads it
    void (*attention_fwd)(swq_backend *be, void *out, void *att, const void *qkv, int B, int T, int C, int NH);
    // dqkv = (overwritten) from dout, the forward's qkv, out and att; scratch is workspace
    void (*attention_bwd)(swq_backend *be, void *dqkv, void *scratch, const void *dout, const void *qkv,
                          const void *out, const void *att, int B, int T, int C, int NH);
    // Reals att and the backward's scratch each need for this shape (optional: NULL means
    // B*NH*T*T, the probabilities)
    size_t (*attention_buffer_elems)(swq_backend *be, int B, int T, int C, int NH);

    // ---- GELU (tanh approximation) ----
    void (*gelu_fwd)(swq_backend *be, void *out, const void *inp, size_t n);                    // =
    void (*gelu_bwd)(swq_backend *be, void *dinp, const void *inp, const void *dout, size_t n); // +=

    // ---- row gather/scatter (LM head rows, QA logits) ----
    // out[p,:] = in[idx[p],:]
    void (*gather_rows)(swq_backend *be, void *out, const void *in, const int *idx, int P, int C);
    // dst[idx[p],:] += src[p,:]
    void (*scatter_add_rows)(swq_backend *be, void *dst, const void *src, const int *idx, int P, int C);
    // Column c of a [N,K] matrix to a [N] vector and back: out[n] = in[n*K+c]; dst[n*K+c] += src[n].
    void (*get_column)(swq_backend *be, void *out, const void *in, int N, int K, int c);
    void (*add_to_column)(swq_backend *be, void *dst, const void *src, int N, int K, int c);

    // ---- fused softmax + cross-entropy + KL-to-teachers (in place on logits) ----
    // For each row p of logits[P,V] (only the first len[p] columns are valid if len != NULL;
    // the rest are treated as -inf and get zero gradient):
    //   q = softmax(z);  ce = -log q[target[p]]  (target < 0: no CE for that row)
    //   kl = tH[p] - sum_v tS[p,v] * log q[v]    (sum of KL(p_j || q) over the n_teachers teachers
    //                                             whose probabilities were summed into tS and whose
    //                                             sum_v p log p was summed into tH; tS/tH NULL if none)
    //   acc[0] += ce * weight; acc[1] += kl * weight
    //   if grad: z <- grad_scale * weight * ((c + beta*n_teachers) q - c onehot(target) - beta * tS),
    //   c = 1 where target >= 0 and 0 where not (the exact gradient of weight*(ce + beta*kl));
    //   otherwise z is left as is. grad = 2: the same, for a caller that passes the gradient on
    //   only as the dout of a linear's backward (lora_linear_bwd, matmul_bwd) before it writes z
    //   again: a backend may then keep it only in the form those read (CUDA bf16: its bf16 copy).
    //   if nS: nS[p,:] += q, nH[p] += sum_v q log q   (this row becomes a teacher for later configs;
    //   nS/nH may be tS/tH themselves: every use of a row's teacher terms comes before its update)
    void (*xent_kl)(swq_backend *be, void *logits, const int *target, const int *len,
                    const void *tS, const void *tH, int n_teachers, double beta,
                    void *nS, void *nH, double *acc, double weight, double grad_scale, int grad,
                    int P, int V);
    // out[p] = argmax_v logits[p, v] (first max), result written to host ints
    void (*argmax_rows)(swq_backend *be, int *out_host, const void *logits, int P, int V);

    // ---- optimizer ----
    // AdamW with bias correction: g = grad*grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    // p -= lr * (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd * p)
    void (*adamw)(swq_backend *be, void *param, const void *grad, void *m, void *v, size_t n,
                  double lr, double b1, double b2, double eps, double wd, int t, double grad_scale);
};

swq_backend *swq_backend_cpu(int real_size);   // 4 or 8 (double: the gradcheck reference)
void swq_backend_destroy(swq_backend *be);       // any backend; NULL is fine

static inline size_t swq_code_bytes(int bits) { return bits <= 8 ? 1 : 2; }

static inline void *swq_at(const swq_backend *be, void *base, size_t elems) {
    return (char *)base + elems * be->real_size;
}
#endif
