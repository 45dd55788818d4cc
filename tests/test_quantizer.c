// Properties of quantize_rows (per-row symmetric MinMax fake quantization) on the
// CPU backend, float and double: level count, symmetry, idempotence, per-row
// scales, max preserved, zero rows, error bound, round-half-away-from-zero, and
// bits >= 32 as an exact copy (also in place).
#include "check.h"
#include "model/backend.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x5eed1234abcdULL;
static double urand(void) { return check_urand(&rng_state); }

// CPU backend memory is host memory: read/write elements in the backend's own precision.
static double get(const swq_backend *be, const void *p, size_t i) {
    return be->real_size == 4 ? ((const float *)p)[i] : ((const double *)p)[i];
}
static void set(const swq_backend *be, void *p, size_t i, double v) {
    if (be->real_size == 4)
        ((float *)p)[i] = (float)v;
    else
        ((double *)p)[i] = v;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { ROWS = 6, COLS = 1000 };

// Rows of different character and scale: uniform, tiny, zero, one spike, large, mixed signs.
static void fill_matrix(const swq_backend *be, void *x) {
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < COLS; c++) {
            double u = 2.0 * urand() - 1.0, v;
            switch (r) {
            case 0: v = u; break;
            case 1: v = 1e-3 * u * u * u; break;
            case 2: v = 0.0; break;
            case 3: v = c == 17 ? -0.3 : 0.0; break;
            case 4: v = 37.0 * u; break;
            default: v = (c % 3 == 0 ? -5.0 : 1.0) * urand(); break;
            }
            set(be, x, (size_t)r * COLS + c, v);
        }
    }
}

static double row_maxabs(const swq_backend *be, const void *x, int r) {
    double m = 0.0;
    for (int c = 0; c < COLS; c++) m = fmax(m, fabs(get(be, x, (size_t)r * COLS + c)));
    return m;
}

static void test_bits(swq_backend *be, int bits) {
    const size_t n = (size_t)ROWS * COLS;
    const double qmax = (double)((1L << (bits - 1)) - 1);
    const double ulp = be->real_size == 4 ? 1e-6 : 1e-12;   // relative slack for rounding
    void *x = be->alloc(be, n * be->real_size, "x");
    void *q = be->alloc(be, n * be->real_size, "q");
    void *qq = be->alloc(be, n * be->real_size, "qq");
    void *xn = be->alloc(be, n * be->real_size, "xn");
    void *qn = be->alloc(be, n * be->real_size, "qn");
    double *vals = malloc(COLS * sizeof *vals);
    if (!vals) { printf("out of memory\n"); exit(1); }
    fill_matrix(be, x);
    be->quantize_rows(be, q, x, ROWS, COLS, bits);

    for (int r = 0; r < ROWS; r++) {
        double mx = row_maxabs(be, x, r), a = mx / qmax;
        double qmx = row_maxabs(be, q, r), max_err = 0.0, max_frac = 0.0, max_k = 0.0;
        for (int c = 0; c < COLS; c++) {
            size_t i = (size_t)r * COLS + c;
            double xv = get(be, x, i), qv = get(be, q, i);
            vals[c] = qv;
            max_err = fmax(max_err, fabs(qv - xv));
            if (a > 0) {
                double k = qv / a;
                max_frac = fmax(max_frac, fabs(k - round(k)) - 4 * ulp * fabs(k));   // off-grid beyond rounding
                max_k = fmax(max_k, fabs(k));
            }
        }
        qsort(vals, COLS, sizeof *vals, cmp_double);
        int distinct = 1;
        for (int c = 1; c < COLS; c++) distinct += vals[c] != vals[c - 1];
        long levels = (1L << bits) - 1;
        CHECK(distinct <= levels, "%s bits %d row %d: %d distinct values > %ld", be->name, bits, r, distinct, levels);
        if (r == 0 && bits <= 6)   // 1000 uniform samples hit every level
            CHECK(distinct == levels, "%s bits %d row 0: %d distinct values, expected all %ld levels", be->name,
                  bits, distinct, levels);
        if (mx == 0) {
            int all_zero = 1;
            for (int c = 0; c < COLS; c++) all_zero &= get(be, q, (size_t)r * COLS + c) == 0.0;
            CHECK(all_zero, "%s bits %d row %d: zero row did not stay zero", be->name, bits, r);
            continue;
        }
        CHECK(max_frac <= 1e-6 && max_k <= qmax * (1 + ulp), "%s bits %d row %d: values not on the grid a*k, |k|<=%g (frac %g, max k %g)",
              be->name, bits, r, qmax, max_frac, max_k);
        CHECK(fabs(qmx - mx) <= ulp * mx, "%s bits %d row %d: max|Q| %.17g != max|x| %.17g", be->name, bits, r, qmx, mx);
        CHECK(max_err <= a / 2 * (1 + 1e-5) + ulp * mx, "%s bits %d row %d: error %g > a/2 = %g", be->name, bits, r,
              max_err, a / 2);
    }

    // symmetry Q(-x) = -Q(x), exactly
    for (size_t i = 0; i < n; i++) set(be, xn, i, -get(be, x, i));
    be->quantize_rows(be, qn, xn, ROWS, COLS, bits);
    int sym = 1;
    for (size_t i = 0; i < n; i++) sym &= get(be, qn, i) == -get(be, q, i);
    CHECK(sym, "%s bits %d: Q(-x) != -Q(x)", be->name, bits);

    // idempotence Q(Q(x)) = Q(x)
    be->quantize_rows(be, qq, q, ROWS, COLS, bits);
    double idem = 0.0;
    for (int r = 0; r < ROWS; r++) {
        double mx = row_maxabs(be, q, r);
        for (int c = 0; c < COLS; c++) {
            size_t i = (size_t)r * COLS + c;
            double d = fabs(get(be, qq, i) - get(be, q, i));
            if (d > 0) idem = fmax(idem, d / mx);
        }
    }
    CHECK(idem <= 1e-6, "%s bits %d: Q(Q(x)) differs from Q(x) by %g (relative)", be->name, bits, idem);

    // per-row scales: scaling row 1 by 100 scales only that row's output
    be->copy(be, xn, x, n);
    for (int c = 0; c < COLS; c++) set(be, xn, (size_t)COLS + c, 100.0 * get(be, x, (size_t)COLS + c));
    be->quantize_rows(be, qn, xn, ROWS, COLS, bits);
    int others_same = 1;
    double scaled_err = 0.0, mx1 = row_maxabs(be, x, 1);
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < COLS; c++) {
            size_t i = (size_t)r * COLS + c;
            if (r == 1) {
                // x*100 is itself rounded, so an x/a within rounding of a half may flip to the
                // neighbouring level (one step); anything else must match to rounding
                double d = fabs(get(be, qn, i) - 100.0 * get(be, q, i)) / (100.0 * mx1);
                double k = fabs(get(be, x, i)) / (mx1 / qmax), half = fabs(k - floor(k) - 0.5);
                if (d > 1e-6 && half <= 4 * ulp * qmax && d <= (1 + 1e-5) / qmax) d = 0;
                scaled_err = fmax(scaled_err, d);
            } else
                others_same &= get(be, qn, i) == get(be, q, i);
        }
    }
    CHECK(others_same, "%s bits %d: scaling row 1 changed other rows", be->name, bits);
    CHECK(scaled_err <= 1e-6, "%s bits %d: row 1 scaled by 100 is off by %g (relative)", be->name, bits, scaled_err);

    // in place gives the same result
    be->copy(be, qn, x, n);
    be->quantize_rows(be, qn, qn, ROWS, COLS, bits);
    CHECK(memcmp(qn, q, n * be->real_size) == 0, "%s bits %d: in-place result differs", be->name, bits);

    free(vals);
    be->free(be, x);
    be->free(be, q);
    be->free(be, qq);
    be->free(be, xn);
    be->free(be, qn);
}

static void test_identity(swq_backend *be) {
    const size_t n = (size_t)ROWS * COLS;
    void *x = be->alloc(be, n * be->real_size, "x");
    void *y = be->alloc(be, n * be->real_size, "y");
    void *z = be->alloc(be, n * be->real_size, "z");
    fill_matrix(be, x);
    for (int bits = 32; bits <= 33; bits++) {
        be->quantize_rows(be, y, x, ROWS, COLS, bits);
        CHECK(memcmp(x, y, n * be->real_size) == 0, "%s bits %d: not an exact copy", be->name, bits);
    }
    be->copy(be, z, x, n);
    be->quantize_rows(be, z, z, ROWS, COLS, 32);
    CHECK(memcmp(x, z, n * be->real_size) == 0, "%s bits 32 in place: changed the data", be->name);
    be->free(be, x);
    be->free(be, y);
    be->free(be, z);
}

// Exact small cases: halves round away from zero (round(), not rint()).
static void test_hand(swq_backend *be) {
    static const struct { int bits, cols; double in[6], out[6]; } cases[] = {
        {2, 5, {0.2, -1.0, 0.6, 0.5, -0.5}, {0.0, -1.0, 1.0, 1.0, -1.0}},
        {3, 6, {3.0, 1.5, -1.5, 0.4, -3.0, 0.5}, {3.0, 2.0, -2.0, 0.0, -3.0, 1.0}},
        {8, 4, {127.0, 2.5, -2.5, 0.49}, {127.0, 3.0, -3.0, 0.0}},
        {4, 3, {-0.0, 0.0, 0.0}, {0.0, 0.0, 0.0}},
    };
    void *x = be->alloc(be, 6 * be->real_size, "x");
    void *y = be->alloc(be, 6 * be->real_size, "y");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        for (int c = 0; c < cases[k].cols; c++) set(be, x, c, cases[k].in[c]);
        be->quantize_rows(be, y, x, 1, cases[k].cols, cases[k].bits);
        for (int c = 0; c < cases[k].cols; c++)
            CHECK(get(be, y, c) == cases[k].out[c] && !signbit(get(be, y, c)) == !signbit(cases[k].out[c]),
                  "%s hand case %zu (bits %d) col %d: Q(%g) = %g, expected %g", be->name, k, cases[k].bits, c,
                  cases[k].in[c], get(be, y, c), cases[k].out[c]);
    }
    be->free(be, x);
    be->free(be, y);
}

int main(void) {
    static const int bits_list[] = {2, 3, 4, 5, 6, 8, 16};
    for (int rs = 4; rs <= 8; rs += 4) {
        swq_backend *be = swq_backend_cpu(rs);
        if (!be) {
            printf("FAIL: swq_backend_cpu(%d) returned NULL\n", rs);
            return 1;
        }
        for (size_t k = 0; k < sizeof bits_list / sizeof bits_list[0]; k++) test_bits(be, bits_list[k]);
        test_identity(be);
        test_hand(be);
        swq_backend_destroy(be);
    }
    return check_summary("test_quantizer");
}
