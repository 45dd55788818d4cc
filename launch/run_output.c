// Result tables: Markdown on stdout and in table.md, CSV, JSON, and a Pareto plot of size\n// against quality in pareto.svg (all written atomically).
#include "run.h"
#include "../checkpoints/ckpt_file.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static char *table_markdown(const char *title, const eval_row *rows, int K) {
    char *buf = NULL; size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (title && *title) fprintf(f, "### %s\n\n", title);
    fprintf(f, "| Config | Avg weight bits | Loss | EM | F1 | Size (MB) |\n");
    fprintf(f, "|---|---:|---:|---:|---:|---:|\n");
    for (int k = 0; k < K; k++) {
        char em[32] = "-", f1[32] = "-";   // EM/F1 do not apply to pretraining text
        if (!isnan(rows[k].em)) snprintf(em, sizeof em, "%.1f%%", 100 * rows[k].em);
        if (!isnan(rows[k].f1)) snprintf(f1, sizeof f1, "%.1f%%", 100 * rows[k].f1);
        fprintf(f, "| %s | %.2f | %.4f | %s | %s | %.3f |\n", rows[k].name, rows[k].avg_w_bits, rows[k].loss, em, f1,
                rows[k].size_mb);
    }
    fclose(f);
    return buf;
}

// The configs as points (size, quality) with the Pareto front drawn: quality is EM (higher is
// better) or, where EM does not apply, the loss (lower is better). A small standalone SVG.
static char *pareto_svg(const char *title, const eval_row *rows, int K) {
    int use_em = K > 0 && !isnan(rows[0].em);
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    double *y = malloc(sizeof(double) * (size_t)(K > 0 ? K : 1));
    for (int k = 0; k < K; k++) {
        y[k] = use_em ? 100 * rows[k].em : rows[k].loss;
        if (rows[k].size_mb < xmin) xmin = rows[k].size_mb;
        if (rows[k].size_mb > xmax) xmax = rows[k].size_mb;
        if (y[k] < ymin) ymin = y[k];
        if (y[k] > ymax) ymax = y[k];
    }
    double dx = xmax - xmin > 0 ? xmax - xmin : (xmax > 0 ? xmax : 1), dy = ymax - ymin > 0 ? ymax - ymin : 1;
    xmin -= 0.08 * dx; xmax += 0.08 * dx; ymin -= 0.1 * dy; ymax += 0.1 * dy;
    const int W = 560, H = 360, L = 70, R = 20, Tp = 40, Bt = 50;
#define PX(v) (L + ((v) - xmin) / (xmax - xmin) * (W - L - R))
#define PY(v) (H - Bt - ((v) - ymin) / (ymax - ymin) * (H - Tp - Bt))
    char *buf = NULL; size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    const char *t = title ? title : "";
    size_t tl = strlen(t);   // long titles (checkpoint paths) keep their end
    fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"13\">Pareto front: %s%s</text>\n", L, tl > 60 ? "..." : "",
            tl > 60 ? t + tl - 60 : t);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, H - Bt, W - R, H - Bt);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, Tp, L, H - Bt);
    for (int i = 0; i <= 4; i++) {   // ticks
        double xv = xmin + i * (xmax - xmin) / 4, yv = ymin + i * (ymax - ymin) / 4;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.3g</text>\n", PX(xv), H - Bt + 16, xv);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", L - 6, PY(yv) + 4, yv);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">model size (MB)</text>\n", (L + W - R) / 2, H - 12);
    fprintf(f, "<text transform=\"translate(16,%d) rotate(-90)\" text-anchor=\"middle\">%s</text>\n", (Tp + H - Bt) / 2,
            use_em ? "exact match (%, higher is better)" : "loss (lower is better)");
    // front: configs no other config beats in both size and quality, by increasing size
    int *front = malloc(sizeof(int) * (size_t)(K > 0 ? K : 1)), nf = 0;
    for (int k = 0; k < K; k++) {
        int dominated = 0;
        for (int j = 0; j < K && !dominated; j++) {
            if (j == k) continue;
            int better_y = use_em ? y[j] >= y[k] : y[j] <= y[k], strictly = rows[j].size_mb < rows[k].size_mb || y[j] != y[k];
            dominated = rows[j].size_mb <= rows[k].size_mb && better_y && strictly;
        }
        if (!dominated) front[nf++] = k;
    }
    for (int a = 1; a < nf; a++)   // insertion sort by size
        for (int b = a; b > 0 && rows[front[b]].size_mb < rows[front[b - 1]].size_mb; b--) { int t = front[b]; front[b] = front[b - 1]; front[b - 1] = t; }
    fprintf(f, "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" points=\"");
    for (int a = 0; a < nf; a++) fprintf(f, "%.1f,%.1f ", PX(rows[front[a]].size_mb), PY(y[front[a]]));
    fprintf(f, "\"/>\n");
    for (int k = 0; k < K; k++) {
        int on = 0;
        for (int a = 0; a < nf; a++) on |= front[a] == k;
        fprintf(f, "<circle class=\"config\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", PX(rows[k].size_mb), PY(y[k]),
                on ? "#d62728" : "#1f77b4");
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", PX(rows[k].size_mb) + 6, PY(y[k]) - 6, rows[k].name);
    }
    fprintf(f, "</svg>\n");
#undef PX
#undef PY
    fclose(f);
    free(y); free(front);
    return buf;
}

void run_print_table(FILE *out, const char *title, const eval_row *rows, int K) {
    char *md = table_markdown(title, rows, K);
    fputs(md, out);
    fputc('\n', out);
    fflush(out);
    free(md);
}

int run_write_tables(const char *dir, const char *title, const eval_row *rows, int K, const char *json_extra,
                     char *err, size_t errlen) {
    char path[4200];
    char *md = table_markdown(title, rows, K);
    snprintf(path, sizeof(path), "%s/table.md", dir);
    int rc = swq_write_atomic(path, md, strlen(md), err, errlen);
    free(md);
    if (rc) return -1;
    char *svg = pareto_svg(title, rows, K);
    snprintf(path, sizeof(path), "%s/pareto.svg", dir);
    rc = swq_write_atomic(path, svg, strlen(svg), err, errlen);
    free(svg);
    if (rc) return -1;
    char *csv = NULL; size_t n = 0;
    FILE *f = open_memstream(&csv, &n);
    fprintf(f, "config,avg_w_bits,loss,em,f1,size_mb,n_questions\n");
    for (int k = 0; k < K; k++)
        fprintf(f, "%s,%.4f,%.6f,%.6f,%.6f,%.6f,%d\n", rows[k].name, rows[k].avg_w_bits, rows[k].loss, rows[k].em,
                rows[k].f1, rows[k].size_mb, rows[k].n_questions);
    fclose(f);
    snprintf(path, sizeof(path), "%s/table.csv", dir);
    rc = swq_write_atomic(path, csv, strlen(csv), err, errlen);
    free(csv);
    if (rc) return -1;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "title", title ? title : "");
    cJSON *arr = cJSON_AddArrayToObject(root, "configs");
    for (int k = 0; k < K; k++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "config", rows[k].name);
        cJSON_AddNumberToObject(o, "avg_w_bits", rows[k].avg_w_bits);
        cJSON_AddNumberToObject(o, "loss", rows[k].loss);
        if (isnan(rows[k].em)) cJSON_AddNullToObject(o, "em"); else cJSON_AddNumberToObject(o, "em", rows[k].em);
        if (isnan(rows[k].f1)) cJSON_AddNullToObject(o, "f1"); else cJSON_AddNumberToObject(o, "f1", rows[k].f1);
        cJSON_AddNumberToObject(o, "size_mb", rows[k].size_mb);
        cJSON_AddNumberToObject(o, "n_questions", rows[k].n_questions);
        cJSON_AddItemToArray(arr, o);
    }
    if (json_extra) {
        cJSON *extra = cJSON_Parse(json_extra);
        if (extra) cJSON_AddItemToObject(root, "history", extra);
    }
    char *js = cJSON_Print(root);
    cJSON_Delete(root);
    snprintf(path, sizeof(path), "%s/metrics.json", dir);
    rc = swq_write_atomic(path, js, strlen(js), err, errlen);
    free(js);
    return rc;
}
