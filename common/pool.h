/* pool.h - per-request arena for transient strings, released in one pool_deinit(). */
#ifndef S3TEE_POOL_H
#define S3TEE_POOL_H

#include <stdarg.h>
#include <stddef.h>

#include "slice.h"

struct pool_chunk;

struct pool {
    struct pool_chunk *chunks; /* owned list, newest first */
    size_t used;               /* bytes handed out from the newest chunk */
    size_t total;              /* bytes handed out overall (for limits and tests) */
};

void pool_init(struct pool *p);
/* Frees every allocation made from P; P can be used again afterwards. */
void pool_deinit(struct pool *p);
/* Memory lives until pool_deinit(); 16-byte aligned. Aborts on OOM. */
void *pool_alloc(struct pool *p, size_t n);
char *pool_strndup(struct pool *p, const char *s, size_t n);
/* Copies S into the pool (the result is NUL-terminated, the NUL is not counted in len). */
struct slice pool_slice_dup(struct pool *p, struct slice s);
char *pool_printf(struct pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The N slices one after another, NUL-terminated: pool_printf("%.*s%.*s...") without the
 * format parsing, for strings built on every request. */
char *pool_join(struct pool *p, const struct slice *parts, size_t n);
char *pool_vprintf(struct pool *p, const char *fmt, va_list ap);

#endif
