// Minimal test harness shared by the C tests: CHECK counts, the summary line
// "<name>: N passed, M failed" (CI reads it) and a non-zero exit on failure.
#ifndef SWQ_TEST_CHECK_H
#define SWQ_TEST_CHECK_H
#include <stdint.h>
#include <stdio.h>

static int n_pass, n_fail;

// On failure: "FAIL file:line: <condition>: <message>".
#define CHECK(cond, ...)                                        \
    do {                                                        \
        if (cond) n_pass++;                                     \
        else {                                                  \
            n_fail++;                                           \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            printf(__VA_ARGS__);                                \
            printf("\n");                                       \
        }                                                       \
    } while (0)

static inline int check_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, n_pass, n_fail);
    return n_fail ? 1 : 0;
}

// splitmix64 -> [0, 1): a deterministic stream per test, same on every platform.
static inline double check_urand(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (z >> 11) * (1.0 / 9007199254740992.0);
}
#endif
