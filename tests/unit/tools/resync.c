/* Unit tests for tools/resync.c: the listing parser (XML text, entities, tags in order). */
#include "tools/resync.c"

#include "test.h"

static void
test_unescape(void)
{
    char *s;

    s = xml_unescape(SLICE_LIT("a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;"));
    ok_str(s, "a & b <c> \"d\" 'e'", "the five XML entities");
    free(s);
    s = xml_unescape(SLICE_LIT("&#9;&#x41;&#xe9;&#x20ac;&#x1F600;"));
    ok_str(s, "\tA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "numeric references become UTF-8");
    free(s);
    s = xml_unescape(SLICE_LIT("&bogus; & alone;"));
    ok_str(s, "&bogus; & alone;", "unknown entities and a bare '&' are kept");
    free(s);
    s = xml_unescape(SLICE_LIT("trailing &amp"));
    ok_str(s, "trailing &amp", "an unterminated entity is kept");
    free(s);
}

static void
test_xml_next(void)
{
    static const char xml[] = "<ListBucketResult><IsTruncated>true</IsTruncated>"
                              "<Contents><Key>a/1</Key><ETag>&quot;x&quot;</ETag><Size>3</Size>"
                              "</Contents><Contents><Key>a/2</Key><Size>0</Size></Contents>"
                              "<NextContinuationToken>t0k</NextContinuationToken>"
                              "</ListBucketResult>";
    const char *pos = xml, *end = xml + sizeof(xml) - 1, *cp;
    struct slice c, v;

    ok(xml_next(&pos, end, "Contents", &c) == 0, "first Contents");
    cp = c.ptr;
    ok(xml_next(&cp, c.ptr + c.len, "Key", &v) == 0 && slice_eq(v, SLICE_LIT("a/1")), "its Key");
    ok(xml_next(&pos, end, "Contents", &c) == 0, "second Contents");
    cp = c.ptr;
    ok(xml_next(&cp, c.ptr + c.len, "ETag", &v) != 0, "no ETag inside the second entry");
    ok(xml_next(&pos, end, "Contents", &c) != 0, "no third entry");
    pos = xml;
    ok(xml_next(&pos, end, "NextContinuationToken", &v) == 0 && slice_eq(v, SLICE_LIT("t0k")),
       "continuation token");
    pos = xml;
    ok(xml_next(&pos, xml + 30, "IsTruncated", &v) != 0, "a tag cut by the end is not found");
}

int
main(void)
{
    test_unescape();
    test_xml_next();
    return done_testing();
}
