/*
 * fuzz.h - shared by every fuzz target (tests/fuzz/fuzz_*.c).
 *
 * A target defines LLVMFuzzerTestOneInput() and checks its own invariants with FUZZ_CHECK:
 * a failed check aborts, which libFuzzer reports as a crash and the replay runner
 * (tests/fuzz/replay.c, linked instead of libFuzzer by `make unit`) as a failed test.
 */
#ifndef S3TEE_TESTS_FUZZ_H
#define S3TEE_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

/* 1 when [P, P+N) lies inside [BASE, BASE+LEN) (an empty slice anywhere inside or at the end). */
static inline int
fuzz_within(const void *p, size_t n, const void *base, size_t len)
{
    const char *a = p, *b = base;

    if (n == 0) {
        return 1;
    }
    return a >= b && a <= b + len && n <= (size_t)(b + len - a);
}

/*
 * A cursor over the fuzzer's bytes, for targets that need several inputs (a mode, split
 * points, then the rest as the data under test).
 */
struct fuzz_in {
    const uint8_t *p; /* next byte */
    size_t len;       /* bytes left */
};

static inline unsigned
fuzz_byte(struct fuzz_in *in)
{
    if (in->len == 0) {
        return 0;
    }
    in->len--;
    return *in->p++;
}

#endif
