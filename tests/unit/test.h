/* test.h - tiny TAP helpers: each unit-test binary prints "ok N - what" lines and a plan. */
#ifndef S3TEE_TEST_H
#define S3TEE_TEST_H

#include <stdio.h>
#include <string.h>

static int test_count;
static int test_failed;

#define ok(cond, ...)                                                                              \
    do {                                                                                           \
        int ok_c_ = !!(cond);                                                                      \
        test_count++;                                                                              \
        if (!ok_c_)                                                                                \
            test_failed++;                                                                         \
        printf("%sok %d - ", ok_c_ ? "" : "not ", test_count);                                     \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        if (!ok_c_)                                                                                \
            printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
    } while (0)

/* Compares two C strings and prints both on mismatch. */
#define ok_str(got, want, ...)                                                                     \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        int m_ = g_ && w_ && strcmp(g_, w_) == 0;                                                  \
        ok(m_, __VA_ARGS__);                                                                       \
        if (!m_)                                                                                   \
            printf("#   got:  '%s'\n#   want: '%s'\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)");   \
    } while (0)

/* Ends main(): prints the plan and returns the exit status. */
static inline int
done_testing(void)
{
    printf("1..%d\n", test_count);
    return test_failed ? 1 : 0;
}

#endif
