/*
 * fuzz_xml_proxy.c - the S3 XML bodies proxy/req.c reads: the store's answers to
 * ListParts (part sizes, IsTruncated, NextPartNumberMarker), DeleteObjects (Deleted/Key),
 * CompleteMultipartUpload and CopyObject (Error, ETag), CreateMultipartUpload (UploadId),
 * and the client's PutObjectTagging body (Tagging -> "k=v&..."). The code under test is
 * req.c's own xml_text(), xml_unescape() and tags_from_xml(), driven the way its callers
 * drive them.
 *
 * First byte: 0 a store answer, 1 a Tagging body, 2 a text to unescape. Checks:
 *   - every element text found lies inside the body, after the previous one, and holds no
 *     closing tag; the scan position only moves forward;
 *   - xml_unescape() never grows a text, and reads it as XML does (tests/fuzz/xml_ref.h)
 *     whenever the text is well-formed; s3err's escaping reads back to the same bytes;
 *   - a Tagging body gives one "k=v" per <Tag> with a <Key>, all URI-encoded.
 */
#include "proxy/req.c"

#include "fuzz.h"
#include "xml_ref.h"

static int
slice_same(struct slice a, struct slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Every element named by OPEN/CLOSE in IN, checking xml_text's contract; returns the count. */
static size_t
scan(struct slice in, const char *open, const char *close, struct slice *first)
{
    size_t pos = 0, prev = 0, n = 0;
    struct slice out;

    while (xml_text(in, open, close, &pos, &out) == 0) {
        FUZZ_CHECK(pos > prev && pos <= in.len);
        FUZZ_CHECK(fuzz_within(out.ptr, out.len, in.ptr + prev, pos - prev));
        FUZZ_CHECK(memmem(out.ptr, out.len, close, strlen(close)) == NULL);
        if (n++ == 0 && first != NULL) {
            *first = out;
        }
        prev = pos;
    }
    FUZZ_CHECK(pos == prev);
    return n;
}

static void
check_unescape(struct pool *p, struct slice s)
{
    struct slice u = xml_unescape(p, s), again;
    char *ref = pool_alloc(p, s.len + 1), *esc;
    long rn = xml_ref_decode(s.ptr, s.len, ref);

    FUZZ_CHECK(u.len <= s.len && u.ptr[u.len] == '\0');
    if (rn >= 0) {
        FUZZ_CHECK(slice_same(u, slice_make(ref, (size_t)rn)));
    }
    esc = s3err_xml_escape(p, s.ptr, s.len);
    again = xml_unescape(p, slice_cstr(esc));
    FUZZ_CHECK(memchr(s.ptr, '\0', s.len) != NULL || slice_same(again, s));
}

static void
store_answer(struct pool *p, struct slice body)
{
    struct slice part, v = SLICE_NULL, del, k;
    size_t pos = 0;
    uint64_t size;

    scan(body, "<UploadId>", "</UploadId>", NULL);
    scan(body, "<ETag>", "</ETag>", NULL);
    scan(body, "<NextPartNumberMarker>", "</NextPartNumberMarker>", NULL);
    while (xml_text(body, "<Part>", "</Part>", &pos, &part) == 0) {
        if (scan(part, "<Size>", "</Size>", &v) > 0 && slice_to_u64(v, &size) == 0) {
            FUZZ_CHECK(v.len > 0); /* leading zeros are fine: on_parts re-prints the number */
        }
    }
    pos = 0;
    while (xml_text(body, "<Deleted>", "</Deleted>", &pos, &del) == 0) {
        if (scan(del, "<Key>", "</Key>", &k) > 0) {
            check_unescape(p, k);
        }
    }
}

static int
uri_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~' || c == '%';
}

static void
tagging(struct pool *p, struct slice body)
{
    char *tags = tags_from_xml(p, body);
    size_t pos = 0, ntags = 0, pairs = 0, i;
    struct slice tag, k;

    while (xml_text(body, "<Tag>", "</Tag>", &pos, &tag) == 0) {
        size_t tp = 0;

        ntags += xml_text(tag, "<Key>", "</Key>", &tp, &k) == 0;
    }
    for (i = 0; tags[i] != '\0'; i++) {
        FUZZ_CHECK(uri_char(tags[i]) || tags[i] == '=' || tags[i] == '&');
        pairs += tags[i] == '=';
    }
    FUZZ_CHECK(pairs == ntags);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned mode = fuzz_byte(&in) % 3;
    struct slice body = slice_make((const char *)in.p, in.len);
    struct pool p;

    pool_init(&p);
    if (mode == 0) {
        store_answer(&p, body);
    } else if (mode == 1) {
        tagging(&p, body);
    } else {
        check_unescape(&p, body);
    }
    pool_deinit(&p);
    return 0;
}
