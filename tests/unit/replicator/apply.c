/* Unit tests for replicator/apply.c: entry -> plan and requests, Tagging and part-list XML. */
#include "replicator/apply.c"
#include "replicator/sites.c"

#include "test.h"

static struct mutation
entry(enum mutation_op op, const char *key, const char *tags, const char *parts)
{
    struct mutation m;

    memset(&m, 0, sizeof(m));
    m.op = op;
    m.bucket = SLICE_LIT("photos");
    m.key = slice_cstr(key);
    m.stamp = SLICE_LIT("0191f2a3b4c50001.a");
    m.vv = SLICE_LIT("a=3;b=5");
    m.etag = op == MUT_PUT ? SLICE_LIT("\"e\"") : SLICE_LIT("");
    m.tags = slice_cstr(tags);
    m.parts = slice_cstr(parts);
    m.size = -1;
    return m;
}

/* The value of header NAME in RQ as a pool string, or NULL. */
static const char *
header(struct pool *p, const struct sites_request *rq, const char *name)
{
    size_t i;

    for (i = 0; i < rq->nheaders; i++) {
        if (slice_eq(rq->headers[i].name, slice_cstr(name))) {
            return pool_strndup(p, rq->headers[i].value.ptr, rq->headers[i].value.len);
        }
    }
    return NULL;
}

/* "name,name,..." of RQ's headers, in order. */
static const char *
header_names(struct pool *p, const struct sites_request *rq)
{
    char *out = pool_alloc(p, 1024);
    size_t i, n = 0;

    out[0] = '\0';
    for (i = 0; i < rq->nheaders; i++) {
        n += (size_t)snprintf(out + n, 1024 - n, "%s%.*s", i ? "," : "",
                              SLICE_ARGS(rq->headers[i].name));
    }
    return out;
}

static void
test_plan(void)
{
    struct pool p;
    struct apply_plan pl;
    struct mutation m;
    const char *why = NULL;

    pool_init(&p);
    m = entry(MUT_PUT, "k", "a=1", "");
    ok(apply_plan_make(&p, &m, &pl, &why) == 0 && pl.kind == APPLY_KIND_PUT,
       "put without parts: GET from the store, PUT at the peer");
    m = entry(MUT_PUT, "k", "", "5242880,5242880,17");
    ok(apply_plan_make(&p, &m, &pl, &why) == 0 && pl.kind == APPLY_KIND_MULTIPART &&
           pl.nparts == 3 && pl.part_size[0] == 5242880 && pl.part_size[2] == 17 &&
           pl.total == 5242880 * 2 + 17,
       "put with parts: multipart with the same part sizes");
    m = entry(MUT_PUT, "k", "", "0");
    ok(apply_plan_make(&p, &m, &pl, &why) == 0 && pl.kind == APPLY_KIND_MULTIPART &&
           pl.nparts == 1 && pl.total == 0,
       "one empty part (an empty multipart object)");
    m = entry(MUT_DELETE, "k", "", "");
    ok(apply_plan_make(&p, &m, &pl, &why) == 0 && pl.kind == APPLY_KIND_DELETE, "delete: DELETE");
    m = entry(MUT_TAGS, "k", "a=1", "");
    ok(apply_plan_make(&p, &m, &pl, &why) == 0 && pl.kind == APPLY_KIND_PUT_TAGS &&
           strcmp(pl.tagging_xml,
                  "<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>") ==
               0,
       "tags: PUT ?tagging with the tag set");
    m = entry(MUT_TAGS, "k", "", "");
    ok(apply_plan_make(&p, &m, &pl, &why) == 0 && pl.kind == APPLY_KIND_PUT_TAGS &&
           strcmp(pl.tagging_xml, "<Tagging><TagSet></TagSet></Tagging>") == 0,
       "empty tag set: PUT ?tagging with an empty TagSet (RGW's DELETE ?tagging blanks ETags)");

    /* malformed entries are refused, with a reason */
    m = entry(MUT_PUT, "k", "", "");
    m.stamp = SLICE_LIT("nope");
    ok(apply_plan_make(&p, &m, &pl, &why) != 0 && strstr(why, "stamp") != NULL, "bad stamp: %s",
       why);
    m = entry(MUT_PUT, "", "", "");
    ok(apply_plan_make(&p, &m, &pl, &why) != 0, "no key: refused");
    m = entry(MUT_PUT, "k", "", "");
    m.vv = SLICE_LIT("a=1\r\nx-evil: 1");
    ok(apply_plan_make(&p, &m, &pl, &why) != 0 && strstr(why, "control") != NULL,
       "CR LF in a header-bound field: refused (%s)", why);
    m = entry(MUT_PUT, "k", "a=1\n", "");
    ok(apply_plan_make(&p, &m, &pl, &why) != 0, "LF in the tags: refused");
    m = entry(MUT_PUT, "k", "", "1,,2");
    ok(apply_plan_make(&p, &m, &pl, &why) != 0 && strstr(why, "parts") != NULL,
       "bad parts list: refused");
    m = entry(MUT_PUT, "k", "", "1,x");
    ok(apply_plan_make(&p, &m, &pl, &why) != 0, "non-numeric part: refused");
    m = entry(MUT_PUT, "k", "", "6442450944");
    ok(apply_plan_make(&p, &m, &pl, &why) != 0, "a part above 5 GiB: refused");
    {
        char *many = pool_alloc(&p, 10001 * 2 + 1);
        size_t i;

        for (i = 0; i < 10001; i++) {
            memcpy(many + 2 * i, "1,", 2);
        }
        many[10001 * 2 - 1] = '\0';
        m = entry(MUT_PUT, "k", "", many);
        ok(apply_plan_make(&p, &m, &pl, &why) != 0, "10001 parts: refused");
        many[10000 * 2 - 1] = '\0';
        m = entry(MUT_PUT, "k", "", many);
        ok(apply_plan_make(&p, &m, &pl, &why) == 0 && pl.nparts == 10000, "10000 parts: fine");
    }
    m = entry(MUT_TAGS, "k", "a=%zz", "");
    ok(apply_plan_make(&p, &m, &pl, &why) != 0 && strstr(why, "tags") != NULL,
       "tags that do not decode: refused");
    pool_deinit(&p);
}

static void
test_tagging_xml(void)
{
    struct pool p;

    pool_init(&p);
    ok_str(apply_tagging_xml(&p, SLICE_LIT("k%26%3C=%3Cv%3E%22%27&x+y=a%2Bb")),
           "<Tagging><TagSet><Tag><Key>k&amp;&lt;</Key><Value>&lt;v&gt;&quot;&apos;</Value></Tag>"
           "<Tag><Key>x y</Key><Value>a+b</Value></Tag></TagSet></Tagging>",
           "XML special characters escaped; '+' is a space, %%2B a plus");
    ok_str(apply_tagging_xml(&p, SLICE_LIT("a=&b&&c=%C3%A9")),
           "<Tagging><TagSet><Tag><Key>a</Key><Value></Value></Tag><Tag><Key>b</Key><Value>"
           "</Value></Tag><Tag><Key>c</Key><Value>\xc3\xa9</Value></Tag></TagSet></Tagging>",
           "empty values, a key without '=', empty pieces skipped, UTF-8 kept");
    ok_str(apply_tagging_xml(&p, SLICE_LIT("t=a%09b%0Ac")),
           "<Tagging><TagSet><Tag><Key>t</Key><Value>a&#9;b&#10;c</Value></Tag></TagSet>"
           "</Tagging>",
           "tab and newline as character references");
    ok(apply_tagging_xml(&p, SLICE_LIT("t=%01")) == NULL, "a control character XML cannot carry");
    ok(apply_tagging_xml(&p, SLICE_LIT("=v")) == NULL, "an empty key");
    ok(apply_tagging_xml(&p, SLICE_LIT("t=%")) == NULL, "a bad escape");
    ok(apply_tagging_xml(&p, SLICE_LIT("t=%00")) == NULL, "a NUL");
    {
        /* the worst case for the size bound: many one-byte tags of escaped characters */
        char in[400], *x;
        size_t i, n = 0;

        for (i = 0; i < 50; i++) {
            n += (size_t)sprintf(in + n, "%s%%26=%%27", i ? "&" : "");
        }
        x = apply_tagging_xml(&p, slice_make(in, n));
        ok(x != NULL && strlen(x) == 17 + 19 + 50 * (37 + 5 + 6), "50 escaped tags fit (%zu bytes)",
           x ? strlen(x) : 0);
    }
    pool_deinit(&p);
}

static void
test_complete_xml(void)
{
    struct pool p;
    char e1[] = "\"aa\"", e2[] = "\"b<b\"";
    char *etags[2] = {e1, e2};

    pool_init(&p);
    ok_str(apply_complete_xml(&p, etags, 2),
           "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;aa&quot;</ETag>"
           "</Part><Part><PartNumber>2</PartNumber><ETag>&quot;b&lt;b&quot;</ETag></Part>"
           "</CompleteMultipartUpload>",
           "part list with escaped ETags, numbered from 1");
    pool_deinit(&p);
}

static void
test_requests(void)
{
    struct pool p;
    struct mutation m;
    struct apply_peer_args pa;
    struct sites_request rq;
    struct sigv4_header meta[2] = {{SLICE_LIT("content-type"), SLICE_LIT("text/plain")},
                                   {SLICE_LIT("x-amz-meta-a"), SLICE_LIT("1")}};
    const char *xml = "<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>";

    pool_init(&p);
    memset(&pa, 0, sizeof(pa));

    m = entry(MUT_PUT, "dir/a b?c", "a=1", "");
    apply_store_request(&p, &m, "GET", 0, 0, &rq);
    ok(strcmp(rq.method, "GET") == 0 && strcmp(rq.path, "/photos/dir/a%20b%3Fc") == 0 &&
           rq.query[0] == '\0' && rq.nheaders == 0 && strcmp(rq.payload, SIGV4_EMPTY_SHA256) == 0,
       "store GET: encoded path, '/' kept, no Range");
    apply_store_request(&p, &m, "HEAD", 0, 0, &rq);
    ok(strcmp(rq.method, "HEAD") == 0, "store HEAD");
    apply_store_request(&p, &m, "GET", 10485760, 17, &rq);
    ok_str(header(&p, &rq, "range"), "bytes=10485760-10485776", "store GET of a part: Range");

    pa.meta = meta;
    pa.nmeta = 2;
    apply_peer_request(&p, &m, APPLY_STEP_PUT, &pa, &rq);
    ok(strcmp(rq.method, "PUT") == 0 && strcmp(rq.path, "/photos/dir/a%20b%3Fc") == 0 &&
           rq.query[0] == '\0' && strcmp(rq.payload, "UNSIGNED-PAYLOAD") == 0,
       "PUT: method, path, UNSIGNED-PAYLOAD");
    ok_str(header_names(&p, &rq),
           "content-type,x-amz-meta-a,x-amz-tagging,x-s3tee-stamp,x-s3tee-vv,x-s3tee-origin-etag,"
           "x-s3tee-tag-stamp",
           "PUT: object headers, tagging and the x-s3tee-* headers");
    ok_str(header(&p, &rq, "x-s3tee-tag-stamp"), "0191f2a3b4c50001.a", "PUT: tag stamp = stamp");
    ok_str(header(&p, &rq, "x-amz-tagging"), "a=1", "PUT: tags as x-amz-tagging");

    m = entry(MUT_PUT, "k", "", "5,5");
    apply_peer_request(&p, &m, APPLY_STEP_CREATE, &pa, &rq);
    ok(strcmp(rq.method, "POST") == 0 && strcmp(rq.query, "uploads") == 0 &&
           header(&p, &rq, "content-type") != NULL && header(&p, &rq, "x-amz-tagging") == NULL,
       "Create: POST ?uploads with the object headers, no empty tagging");
    pa.part = 2;
    pa.upload_id = "u+1/2";
    apply_peer_request(&p, &m, APPLY_STEP_PART, &pa, &rq);
    ok(strcmp(rq.method, "PUT") == 0 && strcmp(rq.query, "partNumber=2&uploadId=u%2B1%2F2") == 0 &&
           header(&p, &rq, "content-type") == NULL && header(&p, &rq, "x-s3tee-stamp") != NULL,
       "UploadPart: query, no object headers, x-s3tee-* headers");
    pa.body = SLICE_LIT("<CompleteMultipartUpload/>");
    apply_peer_request(&p, &m, APPLY_STEP_COMPLETE, &pa, &rq);
    ok(strcmp(rq.method, "POST") == 0 && strcmp(rq.query, "uploadId=u%2B1%2F2") == 0 &&
           header(&p, &rq, "content-md5") != NULL && strlen(rq.payload) == 64,
       "Complete: POST ?uploadId, Content-MD5 and a signed payload hash");
    apply_peer_request(&p, &m, APPLY_STEP_ABORT, &pa, &rq);
    ok(strcmp(rq.method, "DELETE") == 0 && strcmp(rq.query, "uploadId=u%2B1%2F2") == 0,
       "Abort: DELETE ?uploadId");

    memset(&pa, 0, sizeof(pa));
    m = entry(MUT_DELETE, "k", "", "");
    apply_peer_request(&p, &m, APPLY_STEP_DELETE, &pa, &rq);
    ok(strcmp(rq.method, "DELETE") == 0 && rq.query[0] == '\0', "delete: DELETE");
    ok_str(header_names(&p, &rq), "x-s3tee-stamp,x-s3tee-vv",
           "delete: stamp and vector; no empty ETag, no tag stamp");

    m = entry(MUT_TAGS, "k", "a=1", "");
    pa.body = slice_cstr(xml);
    apply_peer_request(&p, &m, APPLY_STEP_PUT_TAGS, &pa, &rq);
    ok(strcmp(rq.method, "PUT") == 0 && strcmp(rq.query, "tagging") == 0, "tags: PUT ?tagging");
    ok_str(header(&p, &rq, "content-md5"), "ygxpoiUw4ExsUsHRCTjifw==", "tags: Content-MD5");
    ok_str(rq.payload, "66cbb9d17ec16bc3501ceb4f4430bdc969a41e57a647ed773e9d473b4ad6d834",
           "tags: payload hash of the XML");
    ok(header(&p, &rq, "x-s3tee-tag-stamp") == NULL && header(&p, &rq, "x-amz-tagging") == NULL,
       "tags: the stamp is the tag stamp, no x-s3tee-tag-stamp");
    memset(&pa, 0, sizeof(pa));
    m = entry(MUT_TAGS, "k", "", "");
    pa.body = SLICE_LIT("<Tagging><TagSet></TagSet></Tagging>");
    apply_peer_request(&p, &m, APPLY_STEP_PUT_TAGS, &pa, &rq);
    ok(strcmp(rq.method, "PUT") == 0 && strcmp(rq.query, "tagging") == 0 &&
           header(&p, &rq, "content-md5") != NULL,
       "empty tags: PUT ?tagging with an empty TagSet");
    pool_deinit(&p);
}

static void
test_copied_headers(void)
{
    ok(apply_copied_header(SLICE_LIT("content-type")) &&
           apply_copied_header(SLICE_LIT("cache-control")) &&
           apply_copied_header(SLICE_LIT("content-disposition")) &&
           apply_copied_header(SLICE_LIT("content-encoding")) &&
           apply_copied_header(SLICE_LIT("content-language")) &&
           apply_copied_header(SLICE_LIT("expires")) &&
           apply_copied_header(SLICE_LIT("x-amz-meta-color")),
       "object headers and user metadata are copied");
    ok(!apply_copied_header(SLICE_LIT("x-amz-meta-s3tee-stamp")) &&
           !apply_copied_header(SLICE_LIT("x-amz-meta-s3tee-vv")),
       "our hidden metadata is not (the peer sets it from x-s3tee-*)");
    ok(!apply_copied_header(SLICE_LIT("content-length")) &&
           !apply_copied_header(SLICE_LIT("etag")) &&
           !apply_copied_header(SLICE_LIT("x-amz-server-side-encryption")) &&
           !apply_copied_header(SLICE_LIT("last-modified")),
       "transport and store-local headers are not");
}

static void
test_small_helpers(void)
{
    char s[] = "a&amp;b&lt;&gt;&quot;&apos;&x;";

    xml_unescape(s);
    ok_str(s, "a&b<>\"'&x;", "XML entities decoded, unknown ones kept");
    ok(strcmp(apply_outcome_name(APPLY_FUTURE), "future") == 0 &&
           strcmp(apply_outcome_name(APPLY_SUPERSEDED), "superseded") == 0,
       "outcome names");
    ok(header_safe(SLICE_LIT("a\tb")) && !header_safe(SLICE_LIT("a\rb")) &&
           !header_safe(SLICE_LIT("a\x7f")),
       "header-safe values");
}

int
main(void)
{
    test_plan();
    test_tagging_xml();
    test_complete_xml();
    test_requests();
    test_copied_headers();
    test_small_helpers();
    return done_testing();
}
