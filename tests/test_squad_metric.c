// SQuAD v1.1 metric against the Python reference (tests/squad_metric_ref.py) on the cases
// in tests/fixtures/data/metric_cases.tsv.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "data/squad.h"

static void unescape(char *s) {
    char *o = s;
    for (; *s; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            *o++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : *s;
        } else *o++ = *s;
    }
    *o = 0;
}

int main(void) {
    const char *path = "tests/fixtures/data/metric_cases.tsv";
    char err[512];
    size_t len;
    char *text = swq_read_file(path, &len, err, sizeof err);
    if (!text) { CHECK(0, "%s", err); return check_summary("test_squad_metric"); }
    int ncases = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char *f[5];
        int nf = 0;
        char *p = line;
        while (nf < 5) {
            f[nf++] = p;
            char *tab = strchr(p, '\t');
            if (!tab) break;
            *tab = 0;
            p = tab + 1;
        }
        if (nf != 5) { CHECK(0, "%s: malformed line '%s'", path, line); continue; }
        unescape(f[0]);
        char *answers[16];
        int na = 0;
        for (char *a = f[1];;) {
            char *bar = strchr(a, '|');
            answers[na++] = a;
            if (!bar || na == 16) break;
            *bar = 0;
            a = bar + 1;
        }
        int em_want = atoi(f[2]);
        double f1_want = strtod(f[3], NULL);
        int em = squad_exact_match(f[0], answers, na);
        double f1 = squad_f1(f[0], answers, na);
        char *norm = squad_normalize(f[0]);
        CHECK(em == em_want, "EM('%s') = %d, reference %d", f[0], em, em_want);
        CHECK(fabs(f1 - f1_want) <= 1e-9, "F1('%s') = %.17g, reference %.17g", f[0], f1, f1_want);
        CHECK(strcmp(norm, f[4]) == 0, "normalize('%s') = '%s', reference '%s'", f[0], norm, f[4]);
        free(norm);
        ncases++;
    }
    free(text);
    CHECK(ncases >= 40, "only %d cases in %s", ncases, path);
    // no ground truths: score 0 (the official script never calls with none)
    CHECK(squad_exact_match("x", NULL, 0) == 0 && squad_f1("x", NULL, 0) == 0.0, "empty answer list scores 0");
    printf("%d cases\n", ncases);
    return check_summary("test_squad_metric");
}
