/* secmem.c - page mappings for key material: MADV_DONTDUMP, wiped before munmap. */
#include "secmem.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

size_t
secmem_size(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    if (size == 0) {
        size = 1;
    }
    return (size + page - 1) / page * page;
}

void *
secmem_alloc(size_t size)
{
    size_t len = secmem_size(size);
    void *p;
    int e;

    if (len < size) {
        errno = ENOMEM; /* SIZE near SIZE_MAX wrapped around */
        return NULL;
    }
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    /* without DONTDUMP a core file would carry every key: refuse rather than go without */
    if (madvise(p, len, MADV_DONTDUMP) != 0) {
        e = errno;
        munmap(p, len);
        errno = e;
        return NULL;
    }
    return p;
}

void
secmem_free(void *p, size_t size)
{
    size_t len;

    if (p == NULL) {
        return;
    }
    len = secmem_size(size);
    explicit_bzero(p, len);
    munmap(p, len);
}
