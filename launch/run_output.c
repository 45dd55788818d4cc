// Result tables: Markdown on stdout and in table.md, CSV, JSON (all written atomically).
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
