// Minimal test harness shared by the C tests: CHECK counts, the summary line
// "N passed, M failed" and a non-zero exit on failure.
#ifndef SWQ_TEST_CHECK_H
#define SWQ_TEST_CHECK_H
#include <stdio.h>

static int n_pass, n_fail;

#define CHECK(cond, ...)                                        \
    do {                                                        \
        if (cond) n_pass++;                                     \
        else {                                                  \
            n_fail++;                                           \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);         \
            printf(__VA_ARGS__);                                \
            printf("\n");                                       \
        }                                                       \
    } while (0)

static inline int check_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, n_pass, n_fail);
    return n_fail ? 1 : 0;
}
#endif
