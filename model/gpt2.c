// GPT-2 forward/backward over the backend op table (llm.c's structure, plus
// per-linear fake quantization and the LoRA bank).
#include "gpt2.h"
#include "rng.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define BE (m->be)
#define AT(p, off) swq_at(m->be, (p), (off))

static void **alloc_per_layer(gpt2 *m, size_t n, const char *what) {
    int L = m->s.n_layer;
    void **v = calloc(L, sizeof(void *));
    for (int l = 0; l < L; l++) v[l] = BE->alloc(BE, n * BE->real_size, what);
    return v;
}
static void free_per_layer(gpt2 *m, void **v) {
    if (!v) return;
    for (int l = 0; l < m->s.n_layer; l++) BE->free(BE, v[l]);
    free(v);
}

void gpt2_linear_params_all(const gpt2_shape *s, size_t *out) {
    size_t C = s->n_embd;
    for (int l = 0; l < s->n_layer; l++) {
        out[4 * l + LIN_QKV] = 3 * C * C;
        out[4 * l + LIN_ATTN_PROJ] = C * C;
        out[4 * l + LIN_MLP_IN] = 4 * C * C;
        out[4 * l + LIN_MLP_OUT] = 4 * C * C;
    }
    out[4 * s->n_layer] = (size_t)s->vocab_size * C;
}

size_t gpt2_linear_params(const gpt2 *m, int l) {
    return (size_t)m->lin[l].IC * m->lin[l].OC;
}

// Element offsets of linear l's weight and bias (the LM head: the tied wte, no bias).
static size_t linear_w_off(const gpt2 *m, int l) {
    if (l == m->qs->n_linear - 1) return m->tensor_off[P_WTE];
    int wt[4] = { P_QKVW, P_ATTPROJW, P_FCW, P_FCPROJW };
    return m->tensor_off[wt[l % 4]] + (size_t)(l / 4) * m->lin[l].IC * m->lin[l].OC;
}
static size_t linear_b_off(const gpt2 *m, int l) {
    int bt[4] = { P_QKVB, P_ATTPROJB, P_FCB, P_FCPROJB };
    return m->tensor_off[bt[l % 4]] + (size_t)(l / 4) * m->lin[l].OC;
}

int gpt2_create(gpt2 *m, gpt2_shape s, qconfig_set *qs, swq_backend *be, char *err, size_t errlen) {
    memset(m, 0, sizeof(*m));
    if (s.n_layer < 1 || s.n_head < 1 || s.n_embd < 1 || s.n_embd % s.n_head || s.n_ctx < 1 || s.vocab_size < 1) {
        snprintf(err, errlen, "model: invalid shape n_layer=%d n_head=%d n_embd=%d n_ctx=%d vocab_size=%d",
                 s.n_layer, s.n_head, s.n_embd, s.n_ctx, s.vocab_size);
        return -1;
    }
    if (qs->n_layer != s.n_layer) {
        snprintf(err, errlen, "model: precision configs are for %d blocks, model has %d", qs->n_layer, s.n_layer);
        return -1;
    }
    for (int k = 0; k < qs->K; k++)
        if (qs->cfg[k].lora_rank < 0) {
            snprintf(err, errlen, "model: config '%s' has LoRA rank %d (must be >= 0; 0 = no adapter)", qs->cfg[k].name,
                     qs->cfg[k].lora_rank);
            return -1;
        }
    m->s = s; m->be = be; m->qs = qs;
    size_t V = s.vocab_size, C = s.n_embd, L = s.n_layer, T = s.n_ctx;
    size_t n[GPT2_NUM_TENSORS] = {
        V * C, T * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C, L * C, L * C,
        L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C, 2 * C, 2 };
    size_t off = 0;
    for (int i = 0; i < GPT2_NUM_TENSORS; i++) { m->tensor_off[i] = off; m->tensor_n[i] = n[i]; off += n[i]; }
    m->n_base = off;
    int NL = qs->n_linear, K = qs->K;
    m->lin = calloc(NL, sizeof(gpt2_linear));
    m->lora_off = calloc((size_t)K * NL, sizeof(size_t));
    int dims[4][2] = { { C, 3 * C }, { C, C }, { C, 4 * C }, { 4 * C, C } };
    for (int l = 0; l < NL; l++) {
        if (l < 4 * (int)L) { m->lin[l].IC = dims[l % 4][0]; m->lin[l].OC = dims[l % 4][1]; }
        else { m->lin[l].IC = C; m->lin[l].OC = V; }
    }
    size_t lo = 0;
    for (int k = 0; k < K; k++)
        for (int l = 0; l < NL; l++) {
            m->lora_off[(size_t)k * NL + l] = lo;
            lo += (size_t)qs->cfg[k].lora_rank * (m->lin[l].IC + m->lin[l].OC);
        }
    m->n_lora = lo;
    m->n_total = m->n_base + m->n_lora;
    m->params = be->alloc(be, m->n_total * be->real_size, "parameters");
    be->zero(be, m->params, m->n_total * be->real_size);
    for (int l = 0; l < NL; l++) {
        gpt2_linear *li = &m->lin[l];
        li->w = AT(m->params, linear_w_off(m, l));
        if (l < NL - 1) li->b = AT(m->params, linear_b_off(m, l));
    }
    gpt2_keep_grads(m, 0);
    return 0;
}

void *gpt2_grad(const gpt2 *m, size_t off) {
    if (off < m->grad_lo || off > m->n_total) {
        fprintf(stderr, "model: gradient of element %zu asked for, only %zu..%zu kept\n", off, m->grad_lo, m->n_total);
        abort();
    }
    return AT(m->grads, off - m->grad_lo);
}

size_t gpt2_trainable_from(const gpt2 *m) {
    if (m->train_base) return 0;
    return m->task == TASK_QA ? m->tensor_off[P_QAW] : m->n_base;
}

void gpt2_keep_grads(gpt2 *m, size_t from) {
    if (from > m->n_total) from = m->n_total;
    if (m->grads) BE->free(BE, m->grads);
    m->grad_lo = from;
    size_t n = m->n_total - from ? m->n_total - from : 1;   // (an empty range: still a buffer to point into)
    m->grads = BE->alloc(BE, n * BE->real_size, "gradients");
    BE->zero(BE, m->grads, n * BE->real_size);
    // the linears' weight and bias gradients, where kept (else NULL: only train_base uses them)
    for (int l = 0; l < m->qs->n_linear; l++) {
        gpt2_linear *li = &m->lin[l];
        li->dw = linear_w_off(m, l) >= from ? gpt2_grad(m, linear_w_off(m, l)) : NULL;
        li->db = li->b && linear_b_off(m, l) >= from ? gpt2_grad(m, linear_b_off(m, l)) : NULL;
    }
}

static void acts_free(gpt2 *m) {
    gpt2_acts *a = &m->a;
    if (!a->B) return;
    void **singles[] = { &a->encoded, &a->lnf, &a->lnf_mean, &a->lnf_rstd, &a->hx, &a->logits, &a->qa_out,
                         &a->qa_start, &a->qa_end, &a->dres, &a->dln, &a->dbig, &a->dbig2, &a->dqkv,
                         &a->datt_scratch, &a->du, &a->dhx, &a->dqa, &a->wq, &a->bq, &a->wte_q, &a->aq, &a->bq_lora,
                         &a->proj, &a->emb, (void **)&a->pos_rows };
    for (size_t i = 0; i < sizeof(singles) / sizeof(singles[0]); i++) { BE->free(BE, *singles[i]); *singles[i] = NULL; }
    void ***multi[] = { &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->atty, &a->att, &a->res2,
                        &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch, &a->fch_gelu, &a->res3 };
    for (size_t i = 0; i < sizeof(multi) / sizeof(multi[0]); i++) { free_per_layer(m, *multi[i]); *multi[i] = NULL; }
    int NL = m->qs->n_linear;
    for (int l = 0; l < NL; l++) { BE->free(BE, a->xq[l]); BE->free(BE, a->u[l]); }
    free(a->xq); free(a->u);
    memset(a, 0, sizeof(*a));
}

// (Re)allocate activations when a batch exceeds what we have.
static void acts_ensure(gpt2 *m, int B, int T, int P) {
    gpt2_acts *a = &m->a;
    if (a->B && B * T <= a->B * a->T && T <= a->T && B <= a->B && P <= a->P) return;
    int nB = B > a->B ? B : a->B, nT = T > a->T ? T : a->T, nP = P > a->P ? P : a->P;
    acts_free(m);
    B = nB; T = nT; P = nP < 1 ? 1 : nP;
    a->B = B; a->T = T; a->P = P;
    size_t N = (size_t)B * T, C = m->s.n_embd, V = m->s.vocab_size, NH = m->s.n_head;
    int rmax = 1;
    for (int k = 0; k < m->qs->K; k++) if (m->qs->cfg[k].lora_rank > rmax) rmax = m->qs->cfg[k].lora_rank;
    a->rmax = rmax;
    size_t rs = BE->real_size;
#define AL(n, what) BE->alloc(BE, (size_t)(n) * rs, what)
    a->encoded = AL(N * C, "activations.encoded");
    a->ln1 = alloc_per_layer(m, N * C, "activations.ln1");
    a->ln1_mean = alloc_per_layer(m, N, "activations.ln1_mean");
    a->ln1_rstd = alloc_per_layer(m, N, "activations.ln1_rstd");
    a->qkv = alloc_per_layer(m, N * 3 * C, "activations.qkv");
    a->atty = alloc_per_layer(m, N * C, "activations.atty");
    size_t natt = BE->attention_buffer_elems ? BE->attention_buffer_elems(BE, B, T, (int)C, (int)NH)
                                             : (size_t)B * NH * T * T;
    a->att = alloc_per_layer(m, natt, "activations.att");
    a->res2 = alloc_per_layer(m, N * C, "activations.res2");
    a->ln2 = alloc_per_layer(m, N * C, "activations.ln2");
    a->ln2_mean = alloc_per_layer(m, N, "activations.ln2_mean");
    a->ln2_rstd = alloc_per_layer(m, N, "activations.ln2_rstd");
    a->fch = alloc_per_layer(m, N * 4 * C, "activations.fch");
    a->fch_gelu = alloc_per_layer(m, N * 4 * C, "activations.fch_gelu");
    if (!BE->lora_linear_res_fwd) a->proj = AL(N * C, "scratch.projection");
    a->res3 = alloc_per_layer(m, N * C, "activations.res3");
    a->lnf = AL(N * C, "activations.lnf");
    a->lnf_mean = AL(N, "activations.lnf_mean");
    a->lnf_rstd = AL(N, "activations.lnf_rstd");
    a->hx = AL((size_t)P * C, "activations.head_in");
    a->logits = AL((size_t)P * V, "activations.logits");
    a->qa_out = AL(N * 2, "activations.qa_out");
    a->qa_start = AL(N, "activations.qa_start");
    a->qa_end = AL(N, "activations.qa_end");
    int NL = m->qs->n_linear;
    a->xq = calloc(NL, sizeof(void *));
    a->u = calloc(NL, sizeof(void *));
    int any_act_quant = 0;
    for (int k = 0; k < m->qs->K; k++)
        for (int l = 0; l < NL; l++) if (m->qs->cfg[k].lin[l].a < 32) any_act_quant = 1;
    for (int l = 0; l < NL; l++) {
        size_t rows = l == NL - 1 ? (size_t)P : N;
        if (any_act_quant && l % LIN_PER_BLOCK == LIN_ATTN_PROJ && l < NL - 1)
            a->xq[l] = AL(rows * m->lin[l].IC, "activations.quantized_input");
        a->u[l] = AL(rows * rmax, "activations.lora_u");
    }
    a->dres = AL(N * C, "scratch.dres");
    a->dln = AL(N * C, "scratch.dln");
    a->dbig = AL(N * 4 * C, "scratch.dbig");
    a->dbig2 = AL(N * 4 * C, "scratch.dbig2");
    a->dqkv = AL(N * 3 * C, "scratch.dqkv");
    a->datt_scratch = AL(natt, "scratch.datt");
    size_t rowsmax = N > (size_t)P ? N : (size_t)P;
    a->du = AL(rowsmax * rmax, "scratch.du");
    a->dhx = AL((size_t)P * C, "scratch.dhx");
    a->dqa = AL(N * 2, "scratch.dqa");
    size_t lmax = (size_t)rmax * (V > 4 * C ? V : 4 * C);
    a->aq = AL(lmax, "scratch.quantized_lora_a");
    a->bq_lora = AL(lmax, "scratch.quantized_lora_b");
#undef AL
}

void gpt2_reserve(gpt2 *m, int B, int T, int P) { acts_ensure(m, B, T, P); }

void gpt2_note_forward(gpt2 *m, const int *tokens, int B, int T, const int *rows, int P) {
    m->a.tokens = tokens; m->a.rows = rows;
    m->B = B; m->T = T; m->P = P;
}

// A quantization scratch made on first use (a run whose configs are all 32-bit, or all cached as
// reals, never makes it; cached codes are expanded into it); the first use is in a step no backend
// records, since recordings start with the second identical step.
static void *quant_scratch(gpt2 *m, void **slot, int which) {
    if (*slot) return *slot;
    size_t C = m->s.n_embd, V = m->s.vocab_size, wmax = 1;
    for (int l = 0; l < m->qs->n_linear - 1; l++)   // the body's linears (the head has its own, wte_q)
        if ((size_t)m->lin[l].OC * m->lin[l].IC > wmax) wmax = (size_t)m->lin[l].OC * m->lin[l].IC;
    size_t n = which == 0 ? wmax : which == 1 ? (V > 4 * C ? V : 4 * C) : V * C;
    const char *what[3] = { "scratch.quantized_weight", "scratch.quantized_bias", "scratch.quantized_wte" };
    *slot = BE->alloc(BE, n * BE->real_size, what[which]);
    return *slot;
}
// The quantized embedding rows and their index 0..N-1, made on first use (as quant_scratch).
static void emb_rows_ensure(gpt2 *m) {
    gpt2_acts *a = &m->a;
    if (a->emb) return;
    size_t N = (size_t)a->B * a->T;
    a->emb = BE->alloc(BE, N * m->s.n_embd * BE->real_size, "activations.embedding_rows");
    a->pos_rows = BE->alloc(BE, N * sizeof(int), "activations.embedding_row_index");
    int *h = malloc(N * sizeof(int));
    if (!h) { fprintf(stderr, "model: out of host memory (%zu row indices)\n", N); exit(1); }
    for (size_t i = 0; i < N; i++) h[i] = (int)i;
    BE->upload_i32(BE, a->pos_rows, h, N);
    free(h);
}
#define WQ(m) quant_scratch(m, &(m)->a.wq, 0)
#define BQ(m) quant_scratch(m, &(m)->a.bq, 1)
#define WTEQ(m) quant_scratch(m, &(m)->a.wte_q, 2)

void gpt2_invalidate_qcache(gpt2 *m) {
    if (!m->qc_w) return;
    size_t n = (size_t)m->qs->K * m->qs->n_linear;
    for (size_t i = 0; i < n; i++) {
        BE->free(BE, m->qc_w[i]); BE->free(BE, m->qc_b[i]); BE->free(BE, m->qc_s[i]);
        m->qc_w[i] = m->qc_b[i] = m->qc_s[i] = NULL;
    }
}

void gpt2_qcache_enable(gpt2 *m, int on) {
    gpt2_invalidate_qcache(m);
    free(m->qc_w); free(m->qc_b); free(m->qc_s);
    m->qc_w = m->qc_b = m->qc_s = NULL;
    m->qcache = 0;
    if (!on) return;
    size_t n = (size_t)m->qs->K * m->qs->n_linear;
    m->qc_w = calloc(n, sizeof(void *));
    m->qc_b = calloc(n, sizeof(void *));
    m->qc_s = calloc(n, sizeof(void *));
    m->qcache = m->qc_w && m->qc_b && m->qc_s;
}

static int qc_on(const gpt2 *m) { return m->qcache && !m->train_base; }
// The active config's slot of linear l in qc_w, qc_b, qc_s.
static size_t qc_index(const gpt2 *m, int l) { return (size_t)m->active * m->qs->n_linear + l; }

// The active config's quantized base weight (bias if `bias`) of linear l, made on first use.
// Weights of up to 16 bits are kept as integer codes and row scales (a quarter or half of the
// reals), where the backend has them and keeps no copies of its own, and expanded into the
// quantization scratch (the head's: wte_q) on every use: the same values, at one pass over the weight.
static const void *qc_get(gpt2 *m, int l, int bias, int bits) {
    size_t i = qc_index(m, l);
    void **slot = bias ? &m->qc_b[i] : &m->qc_w[i];
    gpt2_linear *li = &m->lin[l];
    int rows = bias ? 1 : li->OC, cols = bias ? li->OC : li->IC;
    int codes = !bias && bits >= 2 && bits <= 16 && BE->dequantize_rows && BE->quantize_rows_codes &&
                !BE->keeps_weight_copies;
    if (!*slot) {
        // "qcache." names tell a backend the buffer is written once here, then only read
        if (codes) {
            *slot = BE->alloc(BE, (size_t)rows * cols * swq_code_bytes(bits), "qcache.codes");
            m->qc_s[i] = BE->alloc(BE, (size_t)rows * BE->real_size, "qcache.scales");
            BE->quantize_rows_codes(BE, *slot, m->qc_s[i], li->w, rows, cols, bits);
        } else {
            *slot = BE->alloc(BE, (size_t)rows * cols * BE->real_size, bias ? "qcache.bias" : "qcache.weight");
            BE->quantize_rows(BE, *slot, bias ? li->b : li->w, rows, cols, bits);
        }
    }
    if (!m->qc_s[i] || bias) return *slot;
    void *out = l == m->qs->n_linear - 1 ? WTEQ(m) : WQ(m);
    BE->dequantize_rows(BE, out, *slot, m->qc_s[i], rows, cols, bits);
    return out;
}

void gpt2_destroy(gpt2 *m) {
    if (!m->be) return;
    gpt2_qcache_enable(m, 0);
    acts_free(m);
    BE->free(BE, m->params);
    BE->free(BE, m->grads);
    free(m->lin); free(m->lora_off);
    memset(m, 0, sizeof(*m));
}

static void fill_normal(float *p, size_t n, double std, swq_rng *r) {
    for (size_t i = 0; i < n; i++) p[i] = (float)(std * swq_rng_normal(r));
}

void gpt2_init_lora(gpt2 *m, uint64_t seed) {
    swq_rng r = { seed ^ 0x4c6f5241ULL };
    float *host = calloc(m->n_lora ? m->n_lora : 1, sizeof(float));
    int NL = m->qs->n_linear;
    for (int k = 0; k < m->qs->K; k++)
        for (int l = 0; l < NL; l++) {
            size_t off = m->lora_off[(size_t)k * NL + l];
            size_t na = (size_t)m->qs->cfg[k].lora_rank * m->lin[l].IC;
            fill_normal(host + off, na, 1.0 / sqrt((double)m->lin[l].IC), &r);   // B stays zero
        }
    BE->upload(BE, AT(m->params, m->n_base), host, m->n_lora);
    free(host);
}

void gpt2_init_random(gpt2 *m, uint64_t seed) {
    swq_rng r = { seed };
    float *h = calloc(m->n_base, sizeof(float));
    double proj_std = 0.02 / sqrt(2.0 * m->s.n_layer);
    for (int t = 0; t < GPT2_NUM_TENSORS; t++) {
        float *p = h + m->tensor_off[t];
        size_t n = m->tensor_n[t];
        switch (t) {
        case P_LN1W: case P_LN2W: case P_LNFW:
            for (size_t i = 0; i < n; i++) p[i] = 1.0f;
            break;
        case P_WTE: case P_QKVW: case P_FCW: case P_QAW: fill_normal(p, n, 0.02, &r); break;
        case P_WPE: fill_normal(p, n, 0.01, &r); break;
        case P_ATTPROJW: case P_FCPROJW: fill_normal(p, n, proj_std, &r); break;
        default: break;   // biases and LN biases zero
        }
    }
    BE->upload(BE, m->params, h, m->n_base);
    free(h);
    gpt2_init_lora(m, seed);
}

// ---- one switchable linear: out = Qa(x) @ Qw(W)^T + Qb(b) + (alpha/r) Qa(x) @ A^T @ B^T ----

typedef struct { const void *w, *b, *A, *Bm; const void *x; int r; double s; } lin_ctx;

// The active config's adapter of linear l (rank r): A [r, IC], then B [OC, r]; and their gradients.
static size_t lora_at(const gpt2 *m, int l) { return m->n_base + m->lora_off[(size_t)m->active * m->qs->n_linear + l]; }
static void lora_pair(gpt2 *m, int l, int r, void **A, void **B) {
    *A = AT(m->params, lora_at(m, l));
    *B = AT(m->params, lora_at(m, l) + (size_t)r * m->lin[l].IC);
}
static void lora_grads(gpt2 *m, int l, int r, void **dA, void **dB) {
    *dA = gpt2_grad(m, lora_at(m, l));
    *dB = gpt2_grad(m, lora_at(m, l) + (size_t)r * m->lin[l].IC);
}


// Where linear l's quantized input lives: its own buffer where the backward needs x unquantized
// elsewhere (the attention output), else x itself, quantized in place: the layernorm outputs, the
// GELU output and the head's rows are read by this linear only (forward and backward).
static void *xq_of(gpt2 *m, int l, const void *x) { return m->a.xq[l] ? m->a.xq[l] : (void *)x; }

static lin_ctx linear_prepare(gpt2 *m, int l, const void *x, int rows, int fwd) {
    const qconfig *cf = &m->qs->cfg[m->active];
    lin_bits lb = cf->lin[l];
    gpt2_linear *li = &m->lin[l];
    gpt2_acts *a = &m->a;
    lin_ctx c;
    int head = l == m->qs->n_linear - 1;
    c.x = x;
    if (lb.a < 32) {   // backward reuses the quantized input saved by forward
        void *xq = xq_of(m, l, x);
        if (fwd) BE->quantize_rows(BE, xq, x, rows, li->IC, lb.a);
        c.x = xq;
    }
    int qc = qc_on(m);
    if (lb.w >= 32) c.w = li->w;
    else if (head && !fwd && qc)   // as the forward left it: wte_q (expanded from the codes) or the cached reals
        c.w = m->qc_s[qc_index(m, l)] ? WTEQ(m) : m->qc_w[qc_index(m, l)];
    else if (head && !qc) {   // wte_q made by the forward, read again by the backward
        if (fwd) BE->quantize_rows(BE, WTEQ(m), li->w, li->OC, li->IC, lb.w);
        c.w = WTEQ(m);
    } else if (qc) c.w = qc_get(m, l, 0, lb.w);
    else { c.w = WQ(m); BE->quantize_rows(BE, (void *)c.w, li->w, li->OC, li->IC, lb.w); }
    c.b = li->b;
    if (li->b && lb.b < 32) {
        if (qc) c.b = qc_get(m, l, 1, lb.b);
        else { c.b = BQ(m); BE->quantize_rows(BE, (void *)c.b, li->b, 1, li->OC, lb.b); }
    }
    c.r = cf->lora_rank;
    c.s = c.r > 0 ? cf->lora_alpha / c.r : 0.0;
    void *A, *Bm;
    lora_pair(m, l, c.r, &A, &Bm);
    c.A = A;
    c.Bm = Bm;
    if (lb.lora < 32 && c.r > 0) {
        BE->quantize_rows(BE, a->aq, c.A, c.r, li->IC, lb.lora);
        BE->quantize_rows(BE, a->bq_lora, c.Bm, li->OC, c.r, lb.lora);
        c.A = a->aq; c.Bm = a->bq_lora;
    }
    return c;
}

// act != NULL: also act = gelu(out) (fused where the backend can)
static void linear_fwd(gpt2 *m, int l, void *out, void *act, const void *x, int rows) {
    gpt2_linear *li = &m->lin[l];
    lin_ctx c = linear_prepare(m, l, x, rows, 1);
    if (act && BE->lora_linear_gelu_fwd) {
        BE->lora_linear_gelu_fwd(BE, out, act, m->a.u[l], c.x, c.w, c.b, c.A, c.Bm, rows, li->IC, li->OC, c.r, c.s);
        return;
    }
    BE->lora_linear_fwd(BE, out, m->a.u[l], c.x, c.w, c.b, c.A, c.Bm, rows, li->IC, li->OC, c.r, c.s);
    if (act) BE->gelu_fwd(BE, act, out, (size_t)rows * li->OC);
}

// out = res + linear l (x), fused where the backend can; tmp [rows, OC]: the linear's output otherwise.
static void linear_fwd_res(gpt2 *m, int l, void *out, void *tmp, const void *res, const void *x, int rows) {
    gpt2_linear *li = &m->lin[l];
    if (!BE->lora_linear_res_fwd) {
        linear_fwd(m, l, tmp, NULL, x, rows);
        BE->add(BE, out, res, tmp, (size_t)rows * li->OC);
        return;
    }
    lin_ctx c = linear_prepare(m, l, x, rows, 1);
    BE->lora_linear_res_fwd(BE, out, res, m->a.u[l], c.x, c.w, c.b, c.A, c.Bm, rows, li->IC, li->OC, c.r, c.s);
}

// dx += dout @ (W + s B A) (straight through all quantizers; dx NULL: not wanted); grads of W, b (if
// train_base) and A, B.
static void linear_bwd(gpt2 *m, int l, void *dx, const void *dout, const void *x, int rows) {
    gpt2_linear *li = &m->lin[l];
    lin_ctx c = linear_prepare(m, l, x, rows, 0);
    void *dA, *dB;
    lora_grads(m, l, c.r, &dA, &dB);
    int tb = m->train_base;
    BE->lora_linear_bwd(BE, dx, tb ? li->dw : NULL, tb ? li->db : NULL, dA, dB, m->a.du, dout, c.x, m->a.u[l], c.w,
                        c.A, c.Bm, rows, li->IC, li->OC, c.r, c.s);
}

// The MLP's second linear, whose input x was gelu(pre): dpre = gelu'(pre) * (dout @ (W + s B A)) (=),
// fused where the backend can; scratch [rows, IC].
static void linear_bwd_gelu(gpt2 *m, int l, void *dpre, void *scratch, const void *pre, const void *dout,
                            const void *x, int rows) {
    gpt2_linear *li = &m->lin[l];
    size_t n = (size_t)rows * li->IC;
    if (!BE->lora_linear_bwd_gelu) {
        BE->zero(BE, scratch, n * BE->real_size);
        linear_bwd(m, l, scratch, dout, x, rows);
        BE->zero(BE, dpre, n * BE->real_size);
        BE->gelu_bwd(BE, dpre, pre, scratch, n);
        return;
    }
    lin_ctx c = linear_prepare(m, l, x, rows, 0);
    void *dA, *dB;
    lora_grads(m, l, c.r, &dA, &dB);
    int tb = m->train_base;
    BE->lora_linear_bwd_gelu(BE, dpre, scratch, pre, tb ? li->dw : NULL, tb ? li->db : NULL, dA, dB, m->a.du, dout,
                             c.x, m->a.u[l], c.w, c.A, c.Bm, rows, li->IC, li->OC, c.r, c.s);
}

#define PT(t) AT(m->params, m->tensor_off[t])
#define GT(t) gpt2_grad(m, m->tensor_off[t])

void gpt2_forward(gpt2 *m, const int *tokens, int B, int T, const int *rows, int P) {
    acts_ensure(m, B, T, P);
    gpt2_acts *a = &m->a;
    gpt2_note_forward(m, tokens, B, T, rows, P);
    int C = m->s.n_embd, NH = m->s.n_head, L = m->s.n_layer, N = B * T;
    size_t C_ = C;
    int head = m->qs->n_linear - 1;
    lin_bits hb = m->qs->cfg[m->active].lin[head];
    // The tied matrix is quantized per row (= per token) with the head's bits: the lookup quantizes
    // only the tokens' rows, after it (the same values; the head's whole matrix is made for the head)
    if (hb.w < 32) {
        emb_rows_ensure(m);
        BE->gather_rows(BE, a->emb, PT(P_WTE), tokens, N, C);
        BE->quantize_rows(BE, a->emb, a->emb, N, C, hb.w);
        BE->encoder_fwd(BE, a->encoded, a->pos_rows, a->emb, PT(P_WPE), B, T, C);
    } else
        BE->encoder_fwd(BE, a->encoded, tokens, PT(P_WTE), PT(P_WPE), B, T, C);
    const void *res = a->encoded;
    for (int l = 0; l < L; l++) {
        BE->layernorm_fwd(BE, a->ln1[l], a->ln1_mean[l], a->ln1_rstd[l], res,
                          AT(PT(P_LN1W), l * C_), AT(PT(P_LN1B), l * C_), N, C);
        linear_fwd(m, 4 * l + LIN_QKV, a->qkv[l], NULL, a->ln1[l], N);
        BE->attention_fwd(BE, a->atty[l], a->att[l], a->qkv[l], B, T, C, NH);
        linear_fwd_res(m, 4 * l + LIN_ATTN_PROJ, a->res2[l], a->proj, res, a->atty[l], N);
        BE->layernorm_fwd(BE, a->ln2[l], a->ln2_mean[l], a->ln2_rstd[l], a->res2[l],
                          AT(PT(P_LN2W), l * C_), AT(PT(P_LN2B), l * C_), N, C);
        linear_fwd(m, 4 * l + LIN_MLP_IN, a->fch[l], a->fch_gelu[l], a->ln2[l], N);
        linear_fwd_res(m, 4 * l + LIN_MLP_OUT, a->res3[l], a->proj, a->res2[l], a->fch_gelu[l], N);
        res = a->res3[l];
    }
    BE->layernorm_fwd(BE, a->lnf, a->lnf_mean, a->lnf_rstd, res, PT(P_LNFW), PT(P_LNFB), N, C);
    if (m->task == TASK_LM) {
        if (!rows && P != N) {
            fprintf(stderr, "swq: gpt2_forward: head rows not listed but P = %d is not B*T = %d\n", P, N);
            exit(1);
        }
        if (rows) BE->gather_rows(BE, a->hx, a->lnf, rows, P, C);
        linear_fwd(m, head, a->logits, NULL, rows ? a->hx : a->lnf, P);
    } else {
        BE->matmul_fwd(BE, a->qa_out, a->lnf, PT(P_QAW), PT(P_QAB), N, C, 2, 1.0, 0);
        BE->get_column(BE, a->qa_start, a->qa_out, N, 2, 0);
        BE->get_column(BE, a->qa_end, a->qa_out, N, 2, 1);
    }
}

void gpt2_backward(gpt2 *m) {
    gpt2_acts *a = &m->a;
    int B = m->B, T = m->T, P = m->P;
    int C = m->s.n_embd, NH = m->s.n_head, L = m->s.n_layer, N = B * T;
    size_t C_ = C, rs = BE->real_size;
    int tb = m->train_base, head = m->qs->n_linear - 1;
    BE->zero(BE, a->dln, (size_t)N * C * rs);
    if (m->task == TASK_LM && !a->rows) {   // every position: straight into dln
        linear_bwd(m, head, a->dln, a->logits, a->lnf, P);
    } else if (m->task == TASK_LM) {
        BE->zero(BE, a->dhx, (size_t)P * C * rs);
        linear_bwd(m, head, a->dhx, a->logits, a->hx, P);
        BE->scatter_add_rows(BE, a->dln, a->dhx, a->rows, P, C);
    } else {
        BE->zero(BE, a->dqa, (size_t)N * 2 * rs);
        BE->add_to_column(BE, a->dqa, a->qa_start, N, 2, 0);
        BE->add_to_column(BE, a->dqa, a->qa_end, N, 2, 1);
        BE->matmul_bwd(BE, a->dln, GT(P_QAW), GT(P_QAB), a->dqa, a->lnf, PT(P_QAW), N, C, 2, 1.0);
    }
    const void *res_last = L > 0 ? a->res3[L - 1] : a->encoded;
    BE->zero(BE, a->dres, (size_t)N * C * rs);
    BE->layernorm_bwd(BE, a->dres, tb ? GT(P_LNFW) : NULL, tb ? GT(P_LNFB) : NULL, a->dln, res_last,
                      PT(P_LNFW), a->lnf_mean, a->lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        const void *res_in = l == 0 ? a->encoded : a->res3[l - 1];
        // res3 = res2 + fcproj(gelu(fc(ln2(res2))))
        linear_bwd_gelu(m, 4 * l + LIN_MLP_OUT, a->dbig2, a->dbig, a->fch[l], a->dres, a->fch_gelu[l], N);
        BE->zero(BE, a->dln, (size_t)N * C * rs);
        linear_bwd(m, 4 * l + LIN_MLP_IN, a->dln, a->dbig2, a->ln2[l], N);
        BE->layernorm_bwd(BE, a->dres, tb ? AT(GT(P_LN2W), l * C_) : NULL, tb ? AT(GT(P_LN2B), l * C_) : NULL,
                          a->dln, a->res2[l], AT(PT(P_LN2W), l * C_), a->ln2_mean[l], a->ln2_rstd[l], N, C);
        // res2 = res_in + attproj(attention(qkv(ln1(res_in))))
        BE->zero(BE, a->dln, (size_t)N * C * rs);
        linear_bwd(m, 4 * l + LIN_ATTN_PROJ, a->dln, a->dres, a->atty[l], N);
        BE->attention_bwd(BE, a->dqkv, a->datt_scratch, a->dln, a->qkv[l], a->atty[l], a->att[l], B, T, C, NH);
        // the first block's input gradient reaches only the embeddings: not wanted with the base frozen
        const int want_dx = l > 0 || tb;
        if (want_dx) BE->zero(BE, a->dln, (size_t)N * C * rs);
        linear_bwd(m, 4 * l + LIN_QKV, want_dx ? a->dln : NULL, a->dqkv, a->ln1[l], N);
        if (want_dx)
            BE->layernorm_bwd(BE, a->dres, tb ? AT(GT(P_LN1W), l * C_) : NULL, tb ? AT(GT(P_LN1B), l * C_) : NULL,
                              a->dln, res_in, AT(PT(P_LN1W), l * C_), a->ln1_mean[l], a->ln1_rstd[l], N, C);
    }
    if (tb) BE->encoder_bwd(BE, GT(P_WTE), GT(P_WPE), a->dres, a->tokens, B, T, C);
}

double gpt2_size_bits(const gpt2 *m, int k) {
    const qconfig *cf = &m->qs->cfg[k];
    double bits = 0;
    int NL = m->qs->n_linear;
    for (int l = 0; l < NL; l++) {
        lin_bits lb = cf->lin[l];
        const gpt2_linear *li = &m->lin[l];
        double nw = (double)li->IC * li->OC;
        bits += lb.w * nw + (lb.w < 32 ? 32.0 * li->OC : 0);
        if (li->b) bits += (double)lb.b * li->OC + (lb.b < 32 ? 32.0 : 0);
        double na = (double)cf->lora_rank * li->IC, nb = (double)li->OC * cf->lora_rank;
        if (cf->lora_rank > 0) bits += lb.lora * (na + nb) + (lb.lora < 32 ? 32.0 * (cf->lora_rank + li->OC) : 0);
    }
    int fp[] = { P_WPE, P_LN1W, P_LN1B, P_LN2W, P_LN2B, P_LNFW, P_LNFB };
    for (size_t i = 0; i < sizeof(fp) / sizeof(fp[0]); i++) bits += 32.0 * m->tensor_n[fp[i]];
    if (m->task == TASK_QA) bits += 32.0 * (m->tensor_n[P_QAW] + m->tensor_n[P_QAB]);
    return bits;
}
