// swq bench: times the CDT training step (cdt_step_grads + optimizer_step) at GPT-2 124M
// shapes from a random init, as the peer benchmark (shared/peer/torch_cdt_bench.py) does:
// five configs (weight bits 16/8/6/5/4, LoRA ranks 8/8/8/16/16, alpha 2r, 4r at 4 bits),
// LoRA mode with the base frozen, LM loss on every one of the B*T positions against random
// targets, or span QA (8-bit activations). Prints ms/step, tokens/s, model TFLOP/s (the
// peer's formula), MFU against a cuBLAS bf16 GEMM measured in the same run, and peak memory.
#include "run.h"
#include "../model/optimizer.h"
#include "../model/rng.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef SWQ_HAVE_CUDA
#include "../cuda/backend_cuda.h"
#endif

static const char *BENCH_USAGE =
    "usage: swq bench [--batch B] [--seq T] [--precision fp32|tf32|bf16] [--task lm|qa] [--steps N]\n"
    "                 [--warmup N] [--device cuda|cpu] [--set key=value]... [--json]\n"
    "\n"
    "Times the CDT training step of a GPT-2 124M-shaped model (random init; 5 configs: weight\n"
    "bits 16/8/6/5/4, LoRA ranks 8/8/8/16/16; LoRA mode, base frozen).\n"
    "  --batch B, --seq T   batch shape (default 8 x 512; qa: 4 x 384)\n"
    "  --precision P        cuda matmul precision (default bf16)\n"
    "  --task lm|qa         LM loss on all B*T positions, or span QA (8-bit activations)\n"
    "  --steps N            timed steps (default 10), after --warmup N (default 3, as the peer: the\n"
    "                       first steps size the buffers and record the CUDA graph replayed after)\n"
    "  --set key=value      model.n_layer, model.n_head, model.n_embd, model.vocab_size,\n"
    "                       quant.act_bits, quant.configs (1..5, the first n), quant.qcache (0/1),\n"
    "                       train.finetune (lora|full), bench.plain=1 (one config, no\n"
    "                       quantization, no LoRA adapter, full fine-tune: plain training)\n"
    "  --json               also print one JSON line with the numbers\n"
    "Environment (cuda): SWQ_CUDA_TIMELINE=1 prints the GPU time between consecutive ops per step\n"
    "(events, nothing synchronized), =host only the host's enqueue time against its waits (both turn\n"
    "CUDA graphs off); SWQ_CUDA_GRAPHS=0 issues every op of every step (no recorded step replayed);\n"
    "SWQ_CUDA_FLASH=0 runs bf16 attention by batched GEMMs instead of the fused kernels; the others are\n"
    "in docs/PERF.md. Every SWQ_CUDA_* variable set is printed with the result (and in the JSON).\n";

extern char **environ;

#ifdef SWQ_HAVE_CUDA
// The peak's classes, largest first: "qcache 2.31, activations 0.91" and the same as JSON members
// ("\"qcache\": 2.310, ...").
static void peak_breakdown(const char **cls, const size_t *bytes, int n, char *text, size_t tcap, char *json,
                           size_t jcap) {
    int order[32], used = 0;
    size_t tl = 0, jl = 0;
    for (int i = 0; i < n && i < 32; i++) order[used++] = i;
    for (int i = 1; i < used; i++)   // insertion sort, largest first
        for (int j = i; j > 0 && bytes[order[j]] > bytes[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    text[0] = json[0] = 0;
    for (int i = 0; i < used; i++) {
        char name[40];
        snprintf(name, sizeof name, "%s", cls[order[i]]);
        for (char *q = name; *q; q++)
            if (*q == '"' || *q == '\\' || (unsigned char)*q < 32) *q = '?';
        double gib = bytes[order[i]] / 1073741824.0;
        if (tl < tcap) tl += (size_t)snprintf(text + tl, tcap - tl, "%s%s %.2f", i ? ", " : "", name, gib);
        if (jl < jcap) jl += (size_t)snprintf(json + jl, jcap - jl, "%s\"%s\": %.3f", i ? ", " : "", name, gib);
    }
}
#endif

// "NAME=value NAME=value" of the SWQ_CUDA_* variables set (the backend switches this run had), in
// environment order; characters JSON would need escaped become '?'.
static void cuda_switches(char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "SWQ_CUDA_", 9)) continue;
        for (const char *c = *e; *c && n + 2 < cap; c++) out[n++] = (*c == '"' || *c == '\\' || (unsigned char)*c < 32) ? '?' : *c;
        if (n + 2 < cap) out[n++] = ' ';
    }
    if (n && out[n - 1] == ' ') n--;
    out[n] = 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    int B, T, steps, warmup, task, act_bits, K, full, plain, qcache, json;
    const char *precision, *device;
    gpt2_shape s;
} bench_opts;

static int parse_int(const char *key, const char *val, int lo, int hi, int *out) {
    char *end;
    long v = strtol(val, &end, 10);
    if (!*val || *end || v < lo || v > hi) {
        fprintf(stderr, "swq bench: %s = '%s': expected an integer in %d..%d\n", key, val, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int apply_set(bench_opts *o, const char *kv) {
    const char *eq = strchr(kv, '=');
    if (!eq) {
        fprintf(stderr, "swq bench: --set '%s': expected key=value\n", kv);
        return -1;
    }
    char key[64];
    size_t n = (size_t)(eq - kv);
    if (n >= sizeof(key)) n = sizeof(key) - 1;
    memcpy(key, kv, n);
    key[n] = 0;
    const char *v = eq + 1;
    if (!strcmp(key, "model.n_layer")) return parse_int(key, v, 1, 96, &o->s.n_layer);
    if (!strcmp(key, "model.n_head")) return parse_int(key, v, 1, 128, &o->s.n_head);
    if (!strcmp(key, "model.n_embd")) return parse_int(key, v, 1, 16384, &o->s.n_embd);
    if (!strcmp(key, "model.vocab_size")) return parse_int(key, v, 2, 1 << 20, &o->s.vocab_size);
    if (!strcmp(key, "quant.act_bits")) return parse_int(key, v, 2, 32, &o->act_bits);
    if (!strcmp(key, "quant.configs")) return parse_int(key, v, 1, 5, &o->K);
    if (!strcmp(key, "quant.qcache")) return parse_int(key, v, 0, 1, &o->qcache);
    if (!strcmp(key, "bench.plain")) return parse_int(key, v, 0, 1, &o->plain);
    if (!strcmp(key, "train.finetune")) {
        if (strcmp(v, "lora") && strcmp(v, "full")) {
            fprintf(stderr, "swq bench: train.finetune = '%s': expected lora or full\n", v);
            return -1;
        }
        o->full = !strcmp(v, "full");
        return 0;
    }
    fprintf(stderr, "swq bench: --set: unknown key '%s' (see swq bench --help)\n", key);
    return -1;
}

// The peer's model_flops, for any shape: matmuls forward 2*params*tokens plus attention
// (QK^T and AV), and a backward of ~2x forward in LoRA mode (input grads only), 3x when the
// base is trained too (weight grads as well).
static double model_flops(const bench_opts *o, int K) {
    double C = o->s.n_embd, L = o->s.n_layer, tok = (double)o->B * o->T;
    double n_body = L * (C * 3 * C + C * C + C * 4 * C * 2);
    double n_head = o->task == TASK_LM ? C * o->s.vocab_size : C * 2;
    double attn = L * 2 * 2 * (double)o->T * o->T * C * o->B;
    double fwd = 2 * (n_body + n_head) * tok + attn;
    return K * ((o->full || o->plain) ? 3 : 2) * fwd;
}

int cmd_bench(int argc, char **argv) {
    bench_opts o = {0};
    o.B = -1; o.T = -1; o.steps = 10; o.warmup = 3; o.task = TASK_LM; o.act_bits = -1; o.K = 5; o.qcache = 1;
    o.precision = "bf16"; o.device = "cuda";
    o.s = (gpt2_shape){12, 12, 768, 1024, 50257};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int hv = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(BENCH_USAGE, stdout); return 0; }
        else if (!strcmp(a, "--batch") && hv) { if (parse_int(a, argv[++i], 1, 1 << 16, &o.B)) return 2; }
        else if (!strcmp(a, "--seq") && hv) { if (parse_int(a, argv[++i], 2, 1 << 16, &o.T)) return 2; }
        else if (!strcmp(a, "--steps") && hv) { if (parse_int(a, argv[++i], 1, 1 << 20, &o.steps)) return 2; }
        else if (!strcmp(a, "--warmup") && hv) { if (parse_int(a, argv[++i], 0, 1 << 20, &o.warmup)) return 2; }
        else if (!strcmp(a, "--precision") && hv) o.precision = argv[++i];
        else if (!strcmp(a, "--device") && hv) o.device = argv[++i];
        else if (!strcmp(a, "--json")) o.json = 1;
        else if (!strcmp(a, "--task") && hv) {
            const char *t = argv[++i];
            if (!strcmp(t, "lm")) o.task = TASK_LM;
            else if (!strcmp(t, "qa")) o.task = TASK_QA;
            else { fprintf(stderr, "swq bench: --task '%s': expected lm or qa\n", t); return 2; }
        } else if (!strcmp(a, "--set") && hv) { if (apply_set(&o, argv[++i])) return 2; }
        else {
            fprintf(stderr, "swq bench: unknown option or missing value: '%s' (see swq bench --help)\n", a);
            return 2;
        }
    }
    if (o.B < 0) o.B = o.task == TASK_LM ? 8 : 4;
    if (o.T < 0) o.T = o.task == TASK_LM ? 512 : 384;
    if (o.act_bits < 0) o.act_bits = o.task == TASK_QA ? 8 : 32;
    if (o.plain) { o.K = 1; o.full = 1; }
    if (o.s.n_embd % o.s.n_head) {
        fprintf(stderr, "swq bench: model.n_embd = %d is not a multiple of model.n_head = %d\n", o.s.n_embd, o.s.n_head);
        return 2;
    }
    if (o.T > o.s.n_ctx) o.s.n_ctx = o.T;
    if (o.task == TASK_QA && o.B > 1 << 20) return 2;

    char err[1024] = {0};
    swq_backend *be = NULL;
    int cuda = !strcmp(o.device, "cuda");
    if (!strcmp(o.device, "cpu")) be = swq_backend_cpu(4);
    else if (cuda) {
#ifdef SWQ_HAVE_CUDA
        be = swq_backend_cuda(0, o.precision, err, sizeof(err));
#else
        snprintf(err, sizeof(err), "--device cuda: this swq was built without the CUDA backend (SWQ_CUDA=OFF)");
#endif
    } else snprintf(err, sizeof(err), "--device '%s': expected cuda or cpu", o.device);
    if (!be) { fprintf(stderr, "swq bench: %s\n", err); return 1; }

    static const int BITS[5] = {16, 8, 6, 5, 4}, RANKS[5] = {8, 8, 8, 16, 16};
    qconfig_set *qs = qconfig_set_new(o.s.n_layer, o.K);
    if (!qs) { fprintf(stderr, "swq bench: cannot make the precision configs\n"); swq_backend_destroy(be); return 1; }
    for (int k = 0; k < o.K; k++) {
        qconfig *c = &qs->cfg[k];
        int w = o.plain ? 32 : BITS[k];
        snprintf(c->name, sizeof(c->name), "w%d", w);
        c->lora_rank = o.plain ? 0 : RANKS[k];
        c->lora_alpha = c->lora_rank * (BITS[k] == 4 ? 4.0 : 2.0);
        for (int l = 0; l < qs->n_linear; l++)
            c->lin[l] = (lin_bits){(unsigned char)w, (unsigned char)(o.plain ? 32 : o.act_bits), 32, 32};
    }
    size_t *lp = malloc(sizeof(size_t) * qs->n_linear);
    if (!lp) { fprintf(stderr, "swq bench: out of host memory\n"); return 1; }
    gpt2_linear_params_all(&o.s, lp);
    qconfig_set_order(qs, lp);
    free(lp);

    gpt2 m;
    if (gpt2_create(&m, o.s, qs, be, err, sizeof(err))) {
        fprintf(stderr, "swq bench: %s\n", err);
        qconfig_set_free(qs); swq_backend_destroy(be);
        return 1;
    }
    m.task = o.task;
    m.train_base = o.full;
    gpt2_keep_grads(&m, gpt2_trainable_from(&m));   // LoRA mode: none for the frozen base
    gpt2_init_random(&m, 1);
    if (o.qcache && !o.full) gpt2_qcache_enable(&m, 1);
    cdt_state cs;
    cdt_init(&cs, &m);
    adamw_state opt;
    optimizer_init(&opt, &m, -1, 0.9, 0.999, 1e-8, 0.01, 1.0);

    // one fixed random batch, as the peer
    int N = o.B * o.T;
    swq_batch b = {0};
    b.B = o.B; b.T = o.T;
    int *h = malloc(sizeof(int) * (size_t)N * 2);
    if (!h) { fprintf(stderr, "swq bench: out of host memory\n"); return 1; }
    swq_rng r = {42};
    b.tokens = be->alloc(be, sizeof(int) * N, "bench.tokens");
    for (int i = 0; i < N; i++) h[i] = (int)swq_rng_below(&r, (uint64_t)o.s.vocab_size);
    be->upload_i32(be, b.tokens, h, N);
    if (o.task == TASK_LM) {
        b.P = N;
        b.targets = be->alloc(be, sizeof(int) * N, "bench.targets");
        // every position a loss row, in order: b.rows stays NULL
        for (int i = 0; i < N; i++) h[N + i] = (int)swq_rng_below(&r, (uint64_t)o.s.vocab_size);
        be->upload_i32(be, b.targets, h + N, N);
        b.weight = 1.0 / N;
    } else {
        b.start = be->alloc(be, sizeof(int) * o.B, "bench.start");
        b.end = be->alloc(be, sizeof(int) * o.B, "bench.end");
        b.len = be->alloc(be, sizeof(int) * o.B, "bench.len");
        for (int i = 0; i < o.B; i++) h[i] = (int)swq_rng_below(&r, (uint64_t)o.T);
        be->upload_i32(be, b.start, h, o.B);
        for (int i = 0; i < o.B; i++) h[i] = (int)swq_rng_below(&r, (uint64_t)o.T);
        be->upload_i32(be, b.end, h, o.B);
        for (int i = 0; i < o.B; i++) h[i] = o.T;
        be->upload_i32(be, b.len, h, o.B);
        b.weight = 1.0 / o.B;
    }
    free(h);

    cdt_losses L;
    double t0 = 0, loss0 = 0;
    for (int s = 0; s < o.warmup + o.steps; s++) {
        if (s == o.warmup) {
            be->synchronize(be);
#ifdef SWQ_HAVE_CUDA
            if (cuda) swq_backend_cuda_timeline_reset(be);
#endif
            t0 = now_s();
        }
        cdt_step_grads(&cs, &b, 1.0, -1, &L);
        optimizer_step(&opt, 2e-4);
        if (s == 0) loss0 = L.loss;
    }
    be->synchronize(be);
    double dt = (now_s() - t0) / o.steps;
#ifdef SWQ_HAVE_CUDA
    if (cuda) swq_backend_cuda_timeline_report(be, o.steps);
#endif
    double flops = model_flops(&o, o.K);
    double tflops = flops / dt / 1e12, tok_s = N / dt;
    char dev[256] = "cpu";
    double peak_gib = -1, gemm = -1, bw = -1;
    long g_rec = 0, g_rep = 0;
    char by_text[1024] = "", by_json[1024] = "";   // what the peak was made of
#ifdef SWQ_HAVE_CUDA
    if (cuda) {
        swq_backend_cuda_graph_stats(be, &g_rec, &g_rep);
        size_t peak;
        swq_backend_cuda_mem(be, NULL, &peak);
        peak_gib = peak / 1073741824.0;
        const char *cls[32];
        size_t bytes[32];
        int nc = swq_backend_cuda_mem_at_peak(be, cls, bytes, 32);
        peak_breakdown(cls, bytes, nc, by_text, sizeof by_text, by_json, sizeof by_json);
        swq_backend_cuda_device_name(be, dev, sizeof(dev));
        gemm = swq_backend_cuda_gemm_tflops(be, 8192, 20);
        bw = swq_backend_cuda_copy_gbs(be, (size_t)1 << 30, 10);
    }
#endif
    const char *mode = o.plain ? "plain full-precision training" : o.full ? "full fine-tune" : "LoRA (base frozen)";
    printf("swq bench: %s, %s, task %s, B=%d T=%d, %d config%s, %s, act_bits %d, qcache %s\n", dev, o.precision,
           o.task == TASK_LM ? "lm" : "qa", o.B, o.T, o.K, o.K > 1 ? "s" : "", mode, o.plain ? 32 : o.act_bits,
           o.qcache && !o.full ? "on" : "off");
    printf("  step %.2f ms | %.0f tokens/s | model %.1f TFLOP/s", dt * 1e3, tok_s, tflops);
    if (gemm > 0) printf(" | MFU %.1f%% of %.0f TFLOP/s (measured bf16 GEMM 8192^3)", 100 * tflops / gemm, gemm);
    if (peak_gib >= 0) printf(" | peak %.2f GiB", peak_gib);
    printf("\n  loss first step %.4f, last %.4f; copy bandwidth %.0f GB/s; CUDA graphs: %ld recorded, %ld "
           "replayed of %d steps\n", loss0, L.loss, bw, g_rec, g_rep, o.warmup + o.steps);
    char sw[1024];
    cuda_switches(sw, sizeof sw);
    if (sw[0]) printf("  switches: %s\n", sw);
    if (by_text[0]) printf("  peak by buffer (GiB): %s\n", by_text);
    if (o.json)
        printf("{\"tool\": \"swq-bench\", \"task\": \"%s\", \"B\": %d, \"T\": %d, \"precision\": \"%s\", \"configs\": %d, \"vocab_size\": %d, "
               "\"n_layer\": %d, \"mode\": \"%s\", \"qcache\": %d, \"step_ms\": %.2f, \"tok_per_s\": %.0f, \"model_tflops\": %.1f, \"mfu\": %.4f, "
               "\"gemm_tflops\": %.1f, \"copy_gbs\": %.0f, \"peak_mem_gib\": %.2f, \"graph_replays\": %ld, \"device\": \"%s\", "
               "\"switches\": \"%s\", \"peak_by_buffer_gib\": {%s}}\n",
               o.task == TASK_LM ? "lm" : "qa", o.B, o.T, o.precision, o.K, o.s.vocab_size, o.s.n_layer, mode, o.qcache && !o.full, dt * 1e3, tok_s, tflops,
               gemm > 0 ? tflops / gemm : -1.0, gemm, bw, peak_gib, g_rep, dev, sw, by_json);
    be->free(be, b.tokens); be->free(be, b.rows); be->free(be, b.targets);
    be->free(be, b.start); be->free(be, b.end); be->free(be, b.len);
    optimizer_free(&opt);
    cdt_free(&cs);
    gpt2_destroy(&m);
    qconfig_set_free(qs);
    swq_backend_destroy(be);
    return 0;
}
