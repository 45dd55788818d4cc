// Precision config sets: linear naming, allocation, ordering by precision.
#include "qconfig.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *lin_kind[LIN_PER_BLOCK] = {"attn_qkv", "attn_proj", "mlp_in", "mlp_out"};

void qconfig_linear_name(int n_layer, int l, char *buf, size_t n) {
    if (n == 0) return;
    if (l >= 0 && l < LIN_PER_BLOCK * n_layer)
        snprintf(buf, n, "h.%d.%s", l / LIN_PER_BLOCK, lin_kind[l % LIN_PER_BLOCK]);
    else if (l == LIN_PER_BLOCK * n_layer)
        snprintf(buf, n, "lm_head");
    else
        snprintf(buf, n, "?");
}

int qconfig_linear_index(int n_layer, const char *name) {
    if (!name || n_layer < 0) return -1;
    if (strcmp(name, "lm_head") == 0) return LIN_PER_BLOCK * n_layer;
    if (strncmp(name, "h.", 2) != 0) return -1;
    const char *p = name + 2;
    // digits without leading zeros, so every linear has exactly one name
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return -1;
    long i = 0;
    while (*p >= '0' && *p <= '9') {
        i = i * 10 + (*p - '0');
        if (i >= n_layer) return -1;
        p++;
    }
    if (*p != '.') return -1;
    p++;
    for (int k = 0; k < LIN_PER_BLOCK; k++)
        if (strcmp(p, lin_kind[k]) == 0) return (int)i * LIN_PER_BLOCK + k;
    return -1;
}

int qconfig_component(int n_layer, int l) {
    if (l >= LIN_PER_BLOCK * n_layer) return COMP_HEAD;
    int k = l % LIN_PER_BLOCK;
    return (k == LIN_QKV || k == LIN_ATTN_PROJ) ? COMP_ATTN : COMP_MLP;
}

int qconfig_component_index(const char *name) {
    if (!name) return -1;
    if (strcmp(name, "attn") == 0) return COMP_ATTN;
    if (strcmp(name, "mlp") == 0) return COMP_MLP;
    if (strcmp(name, "head") == 0) return COMP_HEAD;
    return -1;
}

qconfig_set *qconfig_set_new(int n_layer, int K) {
    if (n_layer < 0 || K < 1) return NULL;
    qconfig_set *qs = calloc(1, sizeof(*qs));
    if (!qs) return NULL;
    qs->n_layer = n_layer;
    qs->n_linear = LIN_PER_BLOCK * n_layer + 1;
    qs->K = K;
    qs->cfg = calloc((size_t)K, sizeof(qconfig));
    qs->order = malloc((size_t)K * sizeof(int));
    if (!qs->cfg || !qs->order) { qconfig_set_free(qs); return NULL; }
    for (int k = 0; k < K; k++) {
        qconfig *c = &qs->cfg[k];
        snprintf(c->name, sizeof(c->name), "c%d", k);
        c->lora_rank = 8;
        c->lora_alpha = 16.0;
        c->lin = malloc((size_t)qs->n_linear * sizeof(lin_bits));
        if (!c->lin) { qconfig_set_free(qs); return NULL; }
        for (int l = 0; l < qs->n_linear; l++) c->lin[l] = (lin_bits){32, 32, 32, 32};
        qs->order[k] = k;
    }
    return qs;
}

void qconfig_set_free(qconfig_set *qs) {
    if (!qs) return;
    if (qs->cfg)
        for (int k = 0; k < qs->K; k++) free(qs->cfg[k].lin);
    free(qs->cfg);
    free(qs->order);
    free(qs);
}

// Exact integer sums so that ties are real ties (doubles could round differently).
static void score_parts(const qconfig_set *qs, int k, const size_t *lp, uint64_t *w, uint64_t *a) {
    uint64_t sw = 0, sa = 0;
    for (int l = 0; l < qs->n_linear; l++) {
        uint64_t p = lp ? (uint64_t)lp[l] : 1;
        sw += (uint64_t)qs->cfg[k].lin[l].w * p;
        sa += (uint64_t)qs->cfg[k].lin[l].a * p;
    }
    *w = sw;
    *a = sa;
}

double qconfig_score(const qconfig_set *qs, int k, const size_t *linear_params) {
    uint64_t w, a;
    score_parts(qs, k, linear_params, &w, &a);
    return (double)w;
}

void qconfig_set_order(qconfig_set *qs, const size_t *linear_params) {
    int K = qs->K;
    uint64_t *w = malloc((size_t)K * sizeof(uint64_t)), *a = malloc((size_t)K * sizeof(uint64_t));
    if (!w || !a) {   // cannot rank: keep file order rather than fail
        free(w); free(a);
        for (int k = 0; k < K; k++) qs->order[k] = k;
        return;
    }
    for (int k = 0; k < K; k++) score_parts(qs, k, linear_params, &w[k], &a[k]);
    // insertion sort: stable, K <= 64
    for (int k = 0; k < K; k++) {
        int j = k;
        while (j > 0) {
            int p = qs->order[j - 1];
            int better = w[k] > w[p] || (w[k] == w[p] && a[k] > a[p]);
            if (!better) break;
            qs->order[j] = p;
            j--;
        }
        qs->order[j] = k;
    }
    free(w);
    free(a);
}
