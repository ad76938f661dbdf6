/* pool.c - per-request arena: a list of chunks, big requests get a chunk of their own. */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define POOL_CHUNK_SIZE 4096
#define POOL_ALIGN 16

struct pool_chunk {
    struct pool_chunk *next; /* older chunk */
    size_t size;             /* usable bytes in data */
    _Alignas(POOL_ALIGN) char data[];
};

void
pool_init(struct pool *p)
{
    p->chunks = NULL;
    p->used = 0;
    p->total = 0;
}

void
pool_deinit(struct pool *p)
{
    struct pool_chunk *c = p->chunks;

    while (c != NULL) {
        struct pool_chunk *next = c->next;

        free(c);
        c = next;
    }
    pool_init(p);
}

void *
pool_alloc(struct pool *p, size_t n)
{
    struct pool_chunk *c;
    size_t need = (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);

    p->total += n;
    if (need > POOL_CHUNK_SIZE / 4) {
        /* a large block gets its own chunk, linked behind the current one so it keeps serving */
        c = xmalloc(sizeof(*c) + need);
        c->size = need;
        if (p->chunks != NULL) {
            c->next = p->chunks->next;
            p->chunks->next = c;
        } else {
            c->next = NULL;
            p->chunks = c;
            p->used = need;
        }
        return c->data;
    }
    if (p->chunks == NULL || p->chunks->size - p->used < need) {
        c = xmalloc(sizeof(*c) + POOL_CHUNK_SIZE);
        c->size = POOL_CHUNK_SIZE;
        c->next = p->chunks;
        p->chunks = c;
        p->used = 0;
    }
    c = p->chunks;
    p->used += need;
    return c->data + p->used - need;
}

char *
pool_strndup(struct pool *p, const char *s, size_t n)
{
    char *d = pool_alloc(p, n + 1);

    if (n) {
        memcpy(d, s, n);
    }
    d[n] = '\0';
    return d;
}

char *
pool_join(struct pool *p, const struct slice *parts, size_t n)
{
    size_t len = 0, i;
    char *d, *w;

    for (i = 0; i < n; i++) {
        len += parts[i].len;
    }
    d = w = pool_alloc(p, len + 1);
    for (i = 0; i < n; i++) {
        if (parts[i].len) {
            memcpy(w, parts[i].ptr, parts[i].len);
            w += parts[i].len;
        }
    }
    *w = '\0';
    return d;
}

struct slice
pool_slice_dup(struct pool *p, struct slice s)
{
    return slice_make(pool_strndup(p, s.ptr, s.len), s.len);
}

char *
pool_vprintf(struct pool *p, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    char *d;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return pool_strndup(p, "", 0);
    }
    d = pool_alloc(p, (size_t)n + 1);
    vsnprintf(d, (size_t)n + 1, fmt, ap);
    return d;
}

char *
pool_printf(struct pool *p, const char *fmt, ...)
{
    va_list ap;
    char *d;

    va_start(ap, fmt);
    d = pool_vprintf(p, fmt, ap);
    va_end(ap);
    return d;
}
