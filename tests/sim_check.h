// Shared by the simulator tests (tests/test_*_sim.cpp, after cuda/tools/warp_sim.h): the relative
// error of a result against its reference, and the check of a result's bf16 copy.
#ifndef SWQ_SIM_CHECK_H
#define SWQ_SIM_CHECK_H
#include <math.h>
#include <stddef.h>

// ||a - b|| / ||b|| over the pairs pair(i, a, b), i < n; infinite where a value is NaN (unwritten,
// or read before its copy landed)
template <class F>
static inline double rel_l2_by(size_t n, F pair) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double a, b;
        pair(i, a, b);
        if (!(a == a) || !(b == b)) return INFINITY;
        d += (a - b) * (a - b);
        r += b * b;
    }
    return sqrt(d / (r > 0 ? r : 1));
}
template <class A, class B>
static inline double rel_l2(const A *a, const B *b, size_t n) {
    return rel_l2_by(n, [&](size_t i, double &x, double &y) { x = a[i], y = b[i]; });
}

// elements of the bf16 copy b that are not f rounded to bf16
static inline size_t bf16_mismatch(const __nv_bfloat16 *b, const float *f, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += b[i].bits != __float2bfloat16_rn(f[i]).bits;
    return k;
}
#endif
