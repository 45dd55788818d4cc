// Shared by the CPU-vs-CUDA checkers: ||g - c|| / ||c|| (absolute when c is all zero),
// infinite as soon as either side is not finite.
#ifndef SWQ_CUDA_TOOLS_COMPARE_H
#define SWQ_CUDA_TOOLS_COMPARE_H
#include <math.h>
#include <stddef.h>

static inline double rel_err(const float *g, const float *c, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(g[i]) || !isfinite(c[i])) return INFINITY;
        double d = (double)g[i] - c[i];
        num += d * d;
        den += (double)c[i] * c[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
#endif
