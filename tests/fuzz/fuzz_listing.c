/*
 * fuzz_listing.c - the ListObjectsV2 pages s3tee resync reads from both sites
 * (tools/resync.c lister_parse(): <Contents> entries with Key, ETag and Size, IsTruncated,
 * NextContinuationToken; xml_unescape() with entities and character references).
 *
 * Input: the page. Checks:
 *   - every entry has a key, never longer than the page, and its ETag fits the entry;
 *   - no more entries than <Contents> elements in the page;
 *   - a page that says it is truncated either carries a token or is refused, and one that
 *     does not say so has no token;
 *   - a key without '&' in its text is that text, byte for byte.
 */
#include "tools/resync.c"

#include "fuzz.h"

static size_t
fz_count(const char *p, size_t n, const char *needle)
{
    size_t c = 0, k = strlen(needle);
    const char *q = p, *end = p + n;

    while (q < end && (q = memmem(q, (size_t)(end - q), needle, k)) != NULL) {
        c++;
        q += k;
    }
    return c;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lister l;
    const char *xml = (const char *)data;
    size_t i;
    int rc;

    memset(&l, 0, sizeof(l));
    rc = lister_parse(&l, xml, size);
    FUZZ_CHECK(l.n <= fz_count(xml, size, "<Contents>"));
    for (i = 0; i < l.n; i++) {
        FUZZ_CHECK(l.e[i].key != NULL);
        FUZZ_CHECK(strlen(l.e[i].key) <= size);
        FUZZ_CHECK(strlen(l.e[i].etag) < sizeof(l.e[i].etag));
    }
    if (rc != 0) {
        FUZZ_CHECK(l.more && l.token == NULL);
    } else if (!l.more) {
        FUZZ_CHECK(l.token == NULL);
    } else {
        FUZZ_CHECK(l.token != NULL);
    }
    /* a plain key comes through unchanged */
    {
        const char *pos = xml, *end = xml + size;
        struct slice c, k;
        size_t n = 0;

        while (n < l.n && xml_next(&pos, end, "Contents", &c) == 0) {
            const char *cp = c.ptr;

            if (xml_next(&cp, c.ptr + c.len, "Key", &k) != 0) {
                continue;
            }
            if (memchr(k.ptr, '&', k.len) == NULL && memchr(k.ptr, '\0', k.len) == NULL) {
                FUZZ_CHECK(strlen(l.e[n].key) == k.len && memcmp(l.e[n].key, k.ptr, k.len) == 0);
            }
            n++;
        }
    }
    lister_clear_page(&l);
    free(l.token);
    return 0;
}
