/* Unit tests for proxy/xmlguard.c: size, nesting and element-count bounds, fed in pieces. */
#include "proxy/xmlguard.c"

#include <stdio.h>
#include <stdlib.h>

#include "test.h"

/* Feeds S in pieces of STEP bytes (0: at once) and ends it; returns the final verdict. */
static enum xmlguard_verdict
run(const char *s, size_t len, size_t step, int64_t max_bytes, const char *counted,
    uint32_t max_count)
{
    struct xmlguard g;
    size_t i;

    xmlguard_init(&g, max_bytes, counted, max_count);
    for (i = 0; i < len; i += step ? step : len) {
        size_t n = step && len - i > step ? step : len - i;

        if (xmlguard_feed(&g, s + i, n) != XMLGUARD_OK) {
            return g.verdict;
        }
    }
    return xmlguard_end(&g);
}

static enum xmlguard_verdict
run_str(const char *s, size_t step)
{
    return run(s, strlen(s), step, 1 << 20, "Object", 3);
}

/* <Delete> with N <Object> entries, in a malloc'd buffer. */
static char *
delete_body(int n, size_t *len)
{
    size_t cap = 64 + (size_t)n * 64, off = 0;
    char *b = malloc(cap);
    int i;

    off += (size_t)snprintf(b + off, cap - off,
                            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete xmlns=\"x\">");
    for (i = 0; i < n; i++) {
        off += (size_t)snprintf(b + off, cap - off, "<Object><Key>k%d</Key></Object>", i);
    }
    off += (size_t)snprintf(b + off, cap - off, "<Quiet>true</Quiet></Delete>");
    *len = off;
    return b;
}

static void
test_good(void)
{
    size_t steps[] = {0, 1, 3, 7}, i;

    for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        ok(run_str("<Delete><Object><Key>a</Key></Object><Quiet>true</Quiet></Delete>",
                   steps[i]) == XMLGUARD_OK,
           "DeleteObjects body, pieces of %zu", steps[i]);
    }
    ok(run_str("<?xml version=\"1.0\"?>\n<!-- c --><Delete a=\"1\" b='2'><Object><Key>x&lt;y"
               "</Key><VersionId/></Object></Delete>\n",
               2) == XMLGUARD_OK,
       "declaration, comment, attributes, empty element, entity");
    ok(run_str("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"e\"</ETag>"
               "</Part></CompleteMultipartUpload>",
               5) == XMLGUARD_OK,
       "CompleteMultipartUpload body");
}

static void
test_counted(void)
{
    size_t len;
    char *b = delete_body(1000, &len);

    ok(run(b, len, 1000, 1 << 20, "Object", 1000) == XMLGUARD_OK, "1000 objects: fine");
    free(b);
    b = delete_body(1001, &len);
    ok(run(b, len, 1000, 1 << 20, "Object", 1000) == XMLGUARD_TOO_MANY, "1001: too many");
    ok(run(b, len, 1, 1 << 20, "Object", 1000) == XMLGUARD_TOO_MANY, "1001 bytewise: too many");
    ok(run(b, len, 0, 1 << 20, NULL, 0) == XMLGUARD_OK, "nothing counted: fine");
    free(b);
    ok(run_str("<Delete><Objects/><Object/><ObjectX/><Object/><Object/></Delete>", 1) ==
           XMLGUARD_OK,
       "only the exact name counts, empty elements too (3)");
    ok(run_str("<Delete><Object/><Object/><Object/><Object a='1'/></Delete>", 1) ==
           XMLGUARD_TOO_MANY,
       "the 4th, with an attribute, is one too many");
}

static void
test_size(void)
{
    size_t len;
    char *b = delete_body(10, &len);

    ok(run(b, len, 7, (int64_t)len, "Object", 1000) == XMLGUARD_OK, "exactly max_bytes: fine");
    ok(run(b, len, 7, (int64_t)len - 1, "Object", 1000) == XMLGUARD_TOO_LARGE,
       "one byte more: too large");
    free(b);
}

static void
test_malformed(void)
{
    char deep[4096];
    size_t off = 0;
    int i;

    for (i = 0; i < XMLGUARD_MAX_DEPTH; i++) {
        off += (size_t)sprintf(deep + off, "<a>");
    }
    for (i = 0; i < XMLGUARD_MAX_DEPTH; i++) {
        off += (size_t)sprintf(deep + off, "</a>");
    }
    ok(run_str(deep, 1) == XMLGUARD_OK, "nesting at the limit: fine");
    off = 0;
    for (i = 0; i <= XMLGUARD_MAX_DEPTH; i++) {
        off += (size_t)sprintf(deep + off, "<a>");
    }
    deep[off] = '\0';
    ok(run_str(deep, 1) == XMLGUARD_MALFORMED, "one deeper: malformed");
    ok(run_str("<Delete></Delete></Delete>", 1) == XMLGUARD_MALFORMED, "stray close tag");
    ok(run_str("<Delete><Object>", 1) == XMLGUARD_MALFORMED, "unclosed at the end");
    ok(run_str("<Delete/><Delete/>", 1) == XMLGUARD_MALFORMED, "two roots");
    ok(run_str("", 1) == XMLGUARD_MALFORMED, "empty body");
    ok(run_str("just text", 1) == XMLGUARD_MALFORMED, "no element");
    ok(run_str("<Delete>< Object/></Delete>", 1) == XMLGUARD_MALFORMED, "'< ' is no tag");
    ok(run_str("<Delete><Object", 1) == XMLGUARD_MALFORMED, "ends inside a tag");
    {
        struct xmlguard g;

        xmlguard_init(&g, 100, NULL, 0);
        ok(xmlguard_feed(&g, "</a>", 4) == XMLGUARD_MALFORMED &&
               xmlguard_feed(&g, "<a></a>", 7) == XMLGUARD_MALFORMED &&
               xmlguard_end(&g) == XMLGUARD_MALFORMED && g.errstr != NULL,
           "the verdict is sticky and explained");
    }
}

int
main(void)
{
    test_good();
    test_counted();
    test_size();
    test_malformed();
    return done_testing();
}
