/*
 * fuzz_creds.c - signing/creds.c: the credentials file (its text; creds_load's file checks
 * are the unit tests' business).
 *
 * Input: the file's bytes. Checks: a file that loads has exactly one store key, unique
 * access keys, and every entry is found by the lookup for its kind and allows the buckets it
 * lists; a file that does not load has a "fuzz-creds.txt:..." message in which no word
 * written as a secret appears (the seeds mark secrets with "s3cr3t", and the fuzzer keeps
 * the marker when it mutates them; the messages themselves never contain it).
 */
#include "signing/creds.c"

#include "fuzz.h"

#define PATH "fuzz-creds.txt"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct creds *c;
    char err[512] = "", *buf;
    size_t i, j, stores = 0;
    int rc;

    if (size > CREDS_MAX_FILE) {
        return 0;
    }
    buf = xmalloc(size + 1); /* creds_load leaves one spare byte after the data, too */
    memcpy(buf, data, size);
    buf[size] = '\0';
    c = xcalloc(1, sizeof(*c));
    rc = parse_all(c, buf, size, PATH, err, sizeof(err));
    if (rc == 0) {
        rc = index_entries(c, PATH, err, sizeof(err));
    }
    free(buf);
    if (rc != 0) {
        FUZZ_CHECK(strncmp(err, PATH ":", strlen(PATH) + 1) == 0);
        FUZZ_CHECK(strstr(err, "s3cr3t") == NULL);
        creds_destroy(c);
        return 0;
    }
    FUZZ_CHECK(creds_count(c) == c->n && c->n > 0);
    FUZZ_CHECK(creds_store(c) != NULL && creds_store(c)->kind == CREDS_STORE);
    for (i = 0; i < c->n; i++) {
        const struct creds_entry *e = &c->entries[i];
        struct slice ak = slice_cstr(e->access_key);

        FUZZ_CHECK(e->access_key[0] != '\0' && e->secret[0] != '\0' && e->line > 0);
        FUZZ_CHECK(i == 0 || strcmp(c->entries[i - 1].access_key, e->access_key) < 0);
        stores += e->kind == CREDS_STORE;
        FUZZ_CHECK((creds_find_client(c, ak) == e) == (e->kind == CREDS_CLIENT));
        FUZZ_CHECK((creds_find_site_key(c, ak) == e) == (e->kind == CREDS_SITE));
        FUZZ_CHECK((e->site != NULL) == (e->kind == CREDS_SITE || e->kind == CREDS_PEER));
        if (e->kind == CREDS_SITE) {
            const struct creds_entry *first = creds_find_site(c, slice_cstr(e->site));

            FUZZ_CHECK(first != NULL && first->kind == CREDS_SITE && first->line <= e->line);
        }
        if (e->kind == CREDS_PEER) {
            const struct creds_entry *p = creds_find_peer(c, slice_cstr(e->site));

            FUZZ_CHECK(p != NULL && p->kind == CREDS_PEER && strcmp(p->site, e->site) == 0);
        }
        FUZZ_CHECK(e->all_buckets || (e->kind == CREDS_CLIENT && e->nbuckets > 0));
        for (j = 0; j < e->nbuckets; j++) {
            FUZZ_CHECK(creds_bucket_allowed(e, slice_cstr(e->buckets[j])));
        }
    }
    FUZZ_CHECK(stores == 1);
    creds_destroy(c);
    return 0;
}
