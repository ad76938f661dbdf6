/*
 * Unit tests for signing/secmem.c and the key material kept in it: the credentials' vault
 * and read buffer (signing/creds.c) and the derived-key cache (signing/sigv4.c).
 *
 * "Left out of core dumps" is read back from the kernel: /proc/self/smaps lists a mapping's
 * VmFlags, and MADV_DONTDUMP shows as "dd". "Wiped before unmapping" is seen by this file's
 * own munmap(), which the executable's definition makes the one every caller in the
 * process reaches (libc's internal calls excepted): it records whether each unmapped range
 * was all zero, then unmaps it with the system call.
 */
#include "signing/secmem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "signing/creds.h"
#include "signing/sigv4.h"
#include "test.h"

/* --- munmap, watched ------------------------------------------------------------------------ */

static int unmaps;      /* munmap calls seen since the last watch_reset() */
static int dirty;       /* of them, ranges that held a non-zero byte */
static size_t unmapped; /* bytes unmapped since the last watch_reset() */

static void
watch_reset(void)
{
    unmaps = dirty = 0;
    unmapped = 0;
}

int munmap(void *addr, size_t len);

int
munmap(void *addr, size_t len)
{
    const unsigned char *p = addr;
    size_t i;

    unmaps++;
    unmapped += len;
    for (i = 0; i < len; i++) {
        if (p[i] != 0) {
            dirty++;
            break;
        }
    }
    return (int)syscall(SYS_munmap, addr, len);
}

/* --- /proc/self/smaps ------------------------------------------------------------------------ */

/* The VmFlags line of the mapping holding ADDR, or "" if ADDR is not mapped. */
static const char *
vm_flags(const void *addr)
{
    static char flags[512];
    char line[512];
    uintptr_t a = (uintptr_t)addr, lo, hi;
    int in = 0;
    FILE *f = fopen("/proc/self/smaps", "r");

    flags[0] = '\0';
    if (f == NULL) {
        return flags;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = a >= lo && a < hi;
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(flags, sizeof(flags), "%s", line + 8);
            flags[strcspn(flags, "\n")] = ' ';
            break;
        }
    }
    fclose(f);
    return flags;
}

static int
is_mapped(const void *addr)
{
    return vm_flags(addr)[0] != '\0';
}

/* 1 if ADDR's mapping is marked MADV_DONTDUMP ("dd" among its VmFlags). */
static int
is_dontdump(const void *addr)
{
    const char *f = vm_flags(addr);

    return strstr(f, " dd ") != NULL;
}

/* --- tests ----------------------------------------------------------------------------------- */

static void
test_secmem(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *p, *heap = malloc(64);
    size_t i;
    int zero = 1;

    ok(secmem_size(1) == page && secmem_size(page) == page && secmem_size(page + 1) == 2 * page &&
           secmem_size(0) == page,
       "sizes round up to whole pages");
    p = secmem_alloc(100);
    ok(p != NULL && ((uintptr_t)p % page) == 0, "page-aligned");
    if (p == NULL) {
        return;
    }
    for (i = 0; i < page; i++) {
        zero &= p[i] == 0;
    }
    ok(zero, "zeroed");
    ok(is_dontdump(p) && is_dontdump(p + page - 1), "VmFlags has dd (MADV_DONTDUMP): %s",
       vm_flags(p));
    ok(!is_dontdump(heap), "the heap has no dd, so the check can fail: %s", vm_flags(heap));
    free(heap);
    memset(p, 0xA5, page);
    watch_reset();
    secmem_free(p, 100);
    ok(unmaps == 1 && unmapped == page && dirty == 0, "free wipes the whole page, then unmaps");
    ok(!is_mapped(p), "and the page is gone");
    watch_reset();
    secmem_free(NULL, 100);
    ok(unmaps == 0, "free(NULL) is a no-op");
    p = secmem_alloc(3 * page + 1);
    ok(p != NULL && is_dontdump(p + 4 * page - 1), "a larger area: every page is dd");
    memset(p, 1, 4 * page);
    watch_reset();
    secmem_free(p, 3 * page + 1);
    ok(unmaps == 1 && unmapped == 4 * page && dirty == 0, "a larger area: wiped, unmapped");
    ok(secmem_alloc(SIZE_MAX - 10) == NULL, "a size that wraps around is refused");
    /* the watch itself: an unmap of data that was not wiped is seen */
    p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    p[7] = 1;
    watch_reset();
    munmap(p, page);
    ok(unmaps == 1 && dirty == 1, "an unwiped unmap is noticed, so the checks can fail");
}

static void
test_creds(const char *dir)
{
    char path[512], err[512], big[9000];
    const struct creds_entry *store, *peer;
    struct creds *c;
    FILE *fp;

    snprintf(path, sizeof(path), "%s/creds.txt", dir);
    fp = fopen(path, "w");
    /* over two pages, so the read buffer grows (an outgrown buffer is wiped as well) */
    fputs("client AKC SECRETVALUE-client *\nstore AKS SECRETVALUE-store\n", fp);
    memset(big, '#', sizeof(big) - 2);
    big[sizeof(big) - 2] = '\n';
    big[sizeof(big) - 1] = '\0';
    fputs(big, fp);
    fputs("peer b AKP \"SECRETVALUE peer\"\n", fp);
    fclose(fp);
    chmod(path, 0600);

    watch_reset();
    c = creds_load(path, err, sizeof(err));
    ok(c != NULL, "credentials load: %s", c ? "" : err);
    if (c == NULL) {
        return;
    }
    ok(unmaps >= 2 && dirty == 0, "the read buffers (%d) were wiped before unmapping", unmaps);
    store = creds_store(c);
    peer = creds_find_peer(c, SLICE_LIT("b"));
    ok(strcmp(store->secret, "SECRETVALUE-store") == 0 &&
           strcmp(peer->secret, "SECRETVALUE peer") == 0,
       "secrets as written");
    ok(is_dontdump(store->secret) && is_dontdump(peer->secret) &&
           is_dontdump(creds_find_client(c, SLICE_LIT("AKC"))->secret),
       "every secret is in a dd mapping: %s", vm_flags(store->secret));
    ok(!is_dontdump(store->access_key), "access keys are not secret: on the heap");
    watch_reset();
    {
        const char *at = store->secret;

        creds_destroy(c);
        ok(unmaps == 1 && dirty == 0, "destroy wipes the vault, then unmaps it");
        ok(!is_mapped(at), "the secrets' page is gone");
    }

    /* a refused file leaves nothing behind either */
    fp = fopen(path, "w");
    fputs("store AKS SECRETVALUE-store\nstore AKS2 SECRETVALUE-2\n", fp);
    fclose(fp);
    watch_reset();
    c = creds_load(path, err, sizeof(err));
    ok(c == NULL && unmaps == 2 && dirty == 0,
       "a refused file: buffer and vault wiped and unmapped (%d)", unmaps);
    ok(strstr(err, "SECRETVALUE") == NULL, "and the message holds no secret: %s", err);
    unlink(path);
}

static void
test_key_cache(void)
{
    struct sigv4_key_cache kc;
    const uint8_t *k;

    sigv4_key_cache_init(&kc);
    k = sigv4_key_cache_get(&kc, SLICE_LIT("AK"), SLICE_LIT("SECRET"), SLICE_LIT("20261122"),
                            SLICE_LIT("us-east-1"), SLICE_LIT("s3"));
    ok(is_dontdump(k) && is_dontdump(kc.entries), "derived keys live in a dd mapping: %s",
       vm_flags(k));
    watch_reset();
    sigv4_key_cache_deinit(&kc);
    ok(unmaps == 1 && dirty == 0 && !is_mapped(k), "deinit wipes the keys, then unmaps them");
    ok(kc.entries == NULL, "deinit leaves no pointer to them");
}

int
main(void)
{
    char dir[] = "/tmp/s3tee-secmem-XXXXXX";

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_secmem();
    test_creds(dir);
    test_key_cache();
    rmdir(dir);
    return done_testing();
}
