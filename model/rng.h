// Deterministic RNG (splitmix64) so that fixed seeds give identical runs everywhere.
#ifndef SWQ_RNG_H
#define SWQ_RNG_H
#include <stdint.h>
#include <math.h>

typedef struct { uint64_t s; } swq_rng;

static inline uint64_t swq_rng_next(swq_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline double swq_rng_uniform(swq_rng *r) {   // [0, 1)
    return (swq_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}
static inline double swq_rng_normal(swq_rng *r) {
    double u1 = swq_rng_uniform(r), u2 = swq_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
static inline uint64_t swq_rng_below(swq_rng *r, uint64_t n) { return swq_rng_next(r) % n; }
#endif
