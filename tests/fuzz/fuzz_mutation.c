/*
 * fuzz_mutation.c - queue/mutation.c: a replicated change as read back from the s3tee:log
 * stream (field/value pairs of an XREADGROUP entry).
 *
 * Input: the entry's strings separated by NUL bytes, field, value, field, value... (an odd
 * last string is dropped, as a stream entry always has pairs). Checks on an entry that
 * decodes: the required fields are there (op, non-empty bucket and key, a stamp that
 * parses), every slice points into the entry, and encoding what was decoded and decoding
 * that again gives the same mutation and the same encoding (the producer's canonical form).
 */
#include "fuzz.h"

#include "queue/mutation.h"
#include "queue/stamp.h"

#define MAX_STRINGS 64

static int
slice_same(struct slice a, struct slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void
same_mutation(const struct mutation *a, const struct mutation *b)
{
    FUZZ_CHECK(a->op == b->op && a->size == b->size && a->time_ms == b->time_ms);
    FUZZ_CHECK(slice_same(a->bucket, b->bucket) && slice_same(a->key, b->key));
    FUZZ_CHECK(slice_same(a->stamp, b->stamp) && slice_same(a->vv, b->vv));
    FUZZ_CHECK(slice_same(a->etag, b->etag) && slice_same(a->tags, b->tags));
    FUZZ_CHECK(slice_same(a->parts, b->parts));
}

/* Encodes M and turns the argv into slices (FIELDS, 2 * MUTATION_NFIELDS). */
static size_t
encode(const struct mutation *m, struct slice *fields, char *scratch)
{
    const char *argv[2 * MUTATION_NFIELDS];
    size_t argvlen[2 * MUTATION_NFIELDS], n, i;

    n = mutation_encode(m, argv, argvlen, scratch);
    FUZZ_CHECK(n <= MUTATION_NFIELDS);
    for (i = 0; i < 2 * n; i++) {
        fields[i] = slice_make(argv[i], argvlen[i]);
    }
    return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct slice strs[MAX_STRINGS], enc1[2 * MUTATION_NFIELDS], enc2[2 * MUTATION_NFIELDS];
    const char *p = (const char *)data, *end = p + size;
    char scratch1[64], scratch2[64];
    struct mutation m, m2, m3;
    struct stamp st;
    size_t n = 0, n1, n2, i;

    while (p < end && n < MAX_STRINGS) {
        const char *z = memchr(p, '\0', (size_t)(end - p));
        size_t len = z ? (size_t)(z - p) : (size_t)(end - p);

        strs[n++] = slice_make(p, len);
        p += len + (z ? 1 : 0);
    }
    if (mutation_decode(strs, n / 2, &m) != 0) {
        return 0;
    }
    FUZZ_CHECK(m.op == MUT_PUT || m.op == MUT_DELETE || m.op == MUT_TAGS);
    FUZZ_CHECK(m.bucket.len > 0 && m.key.len > 0);
    FUZZ_CHECK(stamp_parse(m.stamp, &st) == 0);
    FUZZ_CHECK(m.size >= -1 && m.time_ms >= 0);
    FUZZ_CHECK(fuzz_within(m.bucket.ptr, m.bucket.len, data, size));
    FUZZ_CHECK(fuzz_within(m.key.ptr, m.key.len, data, size));
    FUZZ_CHECK(m.etag.len == 0 || fuzz_within(m.etag.ptr, m.etag.len, data, size));
    FUZZ_CHECK(strcmp(mutation_op_name(m.op), "unknown") != 0);

    n1 = encode(&m, enc1, scratch1);
    FUZZ_CHECK(mutation_decode(enc1, n1, &m2) == 0);
    same_mutation(&m, &m2);
    n2 = encode(&m2, enc2, scratch2);
    FUZZ_CHECK(n1 == n2);
    for (i = 0; i < 2 * n1; i++) {
        FUZZ_CHECK(slice_same(enc1[i], enc2[i]));
    }
    /* the encoding read back in another order (Redis keeps the order, but any is valid) */
    for (i = 0; i < n1 / 2; i++) {
        struct slice f = enc1[2 * i], v = enc1[2 * i + 1];

        enc1[2 * i] = enc1[2 * (n1 - 1 - i)];
        enc1[2 * i + 1] = enc1[2 * (n1 - 1 - i) + 1];
        enc1[2 * (n1 - 1 - i)] = f;
        enc1[2 * (n1 - 1 - i) + 1] = v;
    }
    FUZZ_CHECK(mutation_decode(enc1, n1, &m3) == 0);
    same_mutation(&m, &m3);
    return 0;
}
