/* xalloc.h - allocation that aborts on OOM: used for sizes the config or the code bounds. */
#ifndef S3TEE_XALLOC_H
#define S3TEE_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Frees *PP and sets it to NULL, so a double free is a no-op. */
#define xfree(pp)                                                                                  \
    do {                                                                                           \
        free(*(pp));                                                                               \
        *(pp) = NULL;                                                                              \
    } while (0)

#endif
