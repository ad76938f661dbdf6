/*
 * secmem.h - memory for key material: private anonymous mappings that core dumps leave out.
 *
 * Secrets (credential secrets, derived SigV4 signing keys, a credentials file while it is
 * parsed) live in page-aligned mappings marked MADV_DONTDUMP, so a crash's core file holds
 * none of them, and are wiped (explicit_bzero) before the pages go back to the kernel, so
 * no later mapping or heap block can show them either.
 *
 * The process itself stays dumpable and attachable (no PR_SET_DUMPABLE 0): operators need
 * gdb, /proc/PID files and core files for everything else. README "Operating notes" says how
 * to switch core files off altogether.
 */
#ifndef S3TEE_SECMEM_H
#define S3TEE_SECMEM_H

#include <stddef.h>

/*
 * secmem_alloc - SIZE bytes (rounded up to whole pages), zeroed, page-aligned, left out of
 * core dumps. Returns NULL with errno set when the mapping or the madvise fails. Free with
 * secmem_free(P, SIZE) (the same SIZE).
 */
void *secmem_alloc(size_t size);
/* Wipes all of P's pages and unmaps them. NULL is a no-op. */
void secmem_free(void *p, size_t size);
/* SIZE rounded up to whole pages: what secmem_alloc maps and secmem_free wipes. */
size_t secmem_size(size_t size);

#endif
