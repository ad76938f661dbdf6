/*
 * Unit tests for signing/sigv4.c against AWS's published SigV4 examples for S3
 * ("Signature Calculations for the Authorization Header: Transferring Payload in a Single
 * Chunk", the presigned-URL and chunked-upload examples, and the IAM signing-key example):
 * canonical requests, their hashes, strings to sign and signatures, plus canonical-query
 * rules and the key cache.
 */
#include "signing/sigv4.c"

#include "signing/auth.h"
#include "test.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define DATE "20130524T000000Z"
#define SCOPE "20130524/us-east-1/s3/aws4_request"
#define EMPTY SIGV4_EMPTY_SHA256
#define HOST "examplebucket.s3.amazonaws.com"

#define H(n, v) {SLICE_LIT(n), SLICE_LIT(v)}

struct example {
    const char *name;
    const char *method, *uri, *query;
    const struct sigv4_header *headers;
    size_t nheaders;
    const char *payload, *signed_headers;
    const char *canonical; /* from the AWS page */
    const char *hash;      /* hex sha256 of the canonical request, from the AWS page */
    const char *signature; /* from the AWS page */
};

static const struct sigv4_header get_object_h[] = {
    H("Host", HOST), H("Range", "bytes=0-9"), H("x-amz-content-sha256", EMPTY),
    H("x-amz-date", DATE)};
static const struct sigv4_header put_object_h[] = {
    H("Host", HOST), H("Date", "Fri, 24 May 2013 00:00:00 GMT"), H("x-amz-date", DATE),
    H("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    H("x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")};
static const struct sigv4_header bucket_h[] = {H("Host", HOST), H("x-amz-date", DATE),
                                               H("x-amz-content-sha256", EMPTY)};

static const struct example examples[] = {
    {"GET Object", "GET", "/test.txt", "", get_object_h, 4, EMPTY,
     "host;range;x-amz-content-sha256;x-amz-date",
     "GET\n/test.txt\n\nhost:" HOST "\nrange:bytes=0-9\nx-amz-content-sha256:" EMPTY
     "\nx-amz-date:" DATE "\n\nhost;range;x-amz-content-sha256;x-amz-date\n" EMPTY,
     "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
     "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"},
    {"PUT Object", "PUT", "/test%24file.text", "", put_object_h, 5,
     "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
     "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
     "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\nhost:" HOST
     "\nx-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
     "\nx-amz-date:" DATE "\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n"
     "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
     "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
     "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
     "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"},
    {"GET Bucket Lifecycle", "GET", "/", "lifecycle", bucket_h, 3, EMPTY,
     "host;x-amz-content-sha256;x-amz-date",
     "GET\n/\nlifecycle=\nhost:" HOST "\nx-amz-content-sha256:" EMPTY "\nx-amz-date:" DATE
     "\n\nhost;x-amz-content-sha256;x-amz-date\n" EMPTY,
     "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
     "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"},
    {"Get Bucket (List Objects)", "GET", "/", "max-keys=2&prefix=J", bucket_h, 3, EMPTY,
     "host;x-amz-content-sha256;x-amz-date",
     "GET\n/\nmax-keys=2&prefix=J\nhost:" HOST "\nx-amz-content-sha256:" EMPTY
     "\nx-amz-date:" DATE "\n\nhost;x-amz-content-sha256;x-amz-date\n" EMPTY,
     "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"},
};

static void
check_example(struct pool *p, const struct example *ex, const uint8_t key[32])
{
    struct sigv4_request r = {slice_cstr(ex->method), slice_cstr(ex->uri), slice_cstr(ex->query),
                              ex->headers,           ex->nheaders,        slice_cstr(ex->payload)};
    const char *err = NULL, *creq, *sts;
    char hash[65], sig[65], want_sts[256], authz[512];
    struct sigv4_auth a;

    creq = sigv4_canonical_request(p, &r, slice_cstr(ex->signed_headers), 0, &err);
    ok_str(creq, ex->canonical, "%s: canonical request", ex->name);
    if (creq == NULL) {
        return;
    }
    sigv4_sha256_hex(creq, strlen(creq), hash);
    ok_str(hash, ex->hash, "%s: canonical request hash", ex->name);
    sts = sigv4_string_to_sign(p, SLICE_LIT(DATE), SLICE_LIT(SCOPE), creq);
    snprintf(want_sts, sizeof(want_sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", DATE, SCOPE, ex->hash);
    ok_str(sts, want_sts, "%s: string to sign", ex->name);
    sigv4_sign(key, sts, sig);
    ok_str(sig, ex->signature, "%s: signature", ex->name);
    /* the Authorization header the page shows, through the parser */
    snprintf(authz, sizeof(authz), "AWS4-HMAC-SHA256 Credential=%s/%s,SignedHeaders=%s,Signature=%s",
             AK, SCOPE, ex->signed_headers, ex->signature);
    ok(auth_parse_header(slice_cstr(authz), SLICE_LIT(DATE), &a, &err) == 0 &&
           slice_eq(a.signed_headers, slice_cstr(ex->signed_headers)) &&
           slice_eq(a.scope, SLICE_LIT(SCOPE)),
       "%s: Authorization header parses", ex->name);
}

/* Canonical query of Q, or "<NULL>". */
static const char *
cq(struct pool *p, const char *q, int presigned)
{
    const char *r = sigv4_canonical_query(p, slice_cstr(q), presigned);

    return r ? r : "<NULL>";
}

int
main(void)
{
    struct pool p;
    uint8_t key[32], key2[32];
    char hex[65], sig[65];
    const char *err, *creq, *sts;
    size_t i;

    pool_init(&p);

    /* IAM User Guide, "derive a signing key": the only published intermediate key value */
    sigv4_signing_key(SLICE_LIT("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), SLICE_LIT("20120215"),
                      SLICE_LIT("us-east-1"), SLICE_LIT("iam"), key);
    hex_lower(key, 32, hex);
    ok_str(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d",
           "IAM example signing key");

    sigv4_signing_key(SLICE_LIT(SK), SLICE_LIT("20130524"), SLICE_LIT("us-east-1"), SLICE_LIT("s3"),
                      key);
    for (i = 0; i < sizeof(examples) / sizeof(examples[0]); i++) {
        check_example(&p, &examples[i], key);
    }

    /* presigned-URL example (sigv4-query-string-auth) */
    {
        static const struct sigv4_header h[] = {H("Host", HOST)};
        const char *q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE"
                        "%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z"
                        "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
                        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        struct sigv4_request r = {SLICE_LIT("GET"), SLICE_LIT("/test.txt"), slice_cstr(q), h, 1,
                                  SLICE_LIT("UNSIGNED-PAYLOAD")};
        struct sigv4_auth a;

        ok(auth_parse_presigned(&p, slice_cstr(q), &a, &err) == 0, "presigned: query parses");
        creq = sigv4_canonical_request(&p, &r, a.signed_headers, 1, &err);
        ok_str(creq,
               "GET\n/test.txt\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
               "AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date="
               "20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\nhost:" HOST
               "\n\nhost\nUNSIGNED-PAYLOAD",
               "presigned: canonical request leaves X-Amz-Signature out");
        sts = sigv4_string_to_sign(&p, a.amz_date, a.scope, creq);
        ok_str(sts,
               "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
               "\n3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04",
               "presigned: string to sign");
        sigv4_sign(key, sts, sig);
        ok(slice_eq(slice_cstr(sig), a.signature), "presigned: signature aeeed9bb... (%s)", sig);
        creq = sigv4_canonical_request(&p, &r, a.signed_headers, 0, &err);
        ok(creq != NULL && strstr(creq, "X-Amz-Signature=aeeed9bb") != NULL,
           "not presigned: X-Amz-Signature stays in the canonical query");
    }

    /* chunked-upload example (sigv4-streaming): the seed signature */
    {
        static const struct sigv4_header h[] = {
            H("Host", "s3.amazonaws.com"), H("x-amz-date", DATE),
            H("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            H("Authorization", "SignatureToBeCalculated"),
            H("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            H("Content-Encoding", "aws-chunked"), H("x-amz-decoded-content-length", "66560"),
            H("Content-Length", "66824")};
        struct sigv4_request r = {SLICE_LIT("PUT"), SLICE_LIT("/examplebucket/chunkObject.txt"),
                                  SLICE_LIT(""), h, 8,
                                  SLICE_LIT("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")};

        creq = sigv4_canonical_request(
            &p, &r,
            SLICE_LIT("content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
                      "x-amz-decoded-content-length;x-amz-storage-class"),
            0, &err);
        ok_str(creq,
               "PUT\n/examplebucket/chunkObject.txt\n\ncontent-encoding:aws-chunked\n"
               "content-length:66824\nhost:s3.amazonaws.com\nx-amz-content-sha256:"
               "STREAMING-AWS4-HMAC-SHA256-PAYLOAD\nx-amz-date:" DATE "\n"
               "x-amz-decoded-content-length:66560\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n"
               "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
               "x-amz-decoded-content-length;x-amz-storage-class\n"
               "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
               "chunked: seed canonical request");
        sts = sigv4_string_to_sign(&p, SLICE_LIT(DATE), SLICE_LIT(SCOPE), creq);
        ok_str(sts,
               "AWS4-HMAC-SHA256\n" DATE "\n" SCOPE
               "\ncee3fed04b70f867d036f722359b0b1f2f0e5dc0efadbc082b76c4c60e316455",
               "chunked: seed string to sign");
        sigv4_sign(key, sts, sig);
        ok_str(sig, "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
               "chunked: seed signature");
    }

    /* canonical query rules */
    ok_str(cq(&p, "", 0), "", "empty query");
    ok_str(cq(&p, "b=2&a=1&a=0", 0), "a=0&a=1&b=2", "sorted by name, then value");
    ok_str(cq(&p, "acl", 0), "acl=", "parameter without '=' gets 'name='");
    ok_str(cq(&p, "uploads=&acl", 0), "acl=&uploads=", "with and without '='");
    ok_str(cq(&p, "a=1&&b=2&", 0), "a=1&b=2", "empty pieces skipped");
    ok_str(cq(&p, "a=b=c", 0), "a=b%3Dc", "only the first '=' splits");
    ok_str(cq(&p, "prefix=a/b c", 0), "prefix=a%2Fb%20c", "raw '/' and ' ' re-encoded");
    ok_str(cq(&p, "prefix=a%2fb%7e%41", 0), "prefix=a%2Fb~A",
           "lowercase escapes and over-encoded unreserved normalised");
    ok_str(cq(&p, "k=a+b", 0), "k=a%2Bb", "'+' is a literal plus");
    ok_str(cq(&p, "k=a%2Bb", 0), "k=a%2Bb", "%%2B stays %%2B");
    ok_str(cq(&p, "a-b=1&a=2", 0), "a=2&a-b=1",
           "name before value: 'a' sorts before 'a-b' although '=' > '-'");
    ok_str(cq(&p, "B=1&a=1&_=1&~=1&-=1", 0), "-=1&B=1&_=1&a=1&~=1", "byte order, not locale");
    ok_str(cq(&p, "k=%C3%A9&k=z", 0), "k=%C3%A9&k=z", "UTF-8 values sort as bytes (0xC3 > 'z')");
    ok_str(cq(&p, "%61=1", 0), "a=1", "names are decoded too");
    ok_str(cq(&p, "=x", 0), "=x", "empty name kept");
    ok_str(cq(&p, "X-Amz-Signature=abc&X-Amz-Date=1", 1), "X-Amz-Date=1",
           "presigned drops X-Amz-Signature");
    ok_str(cq(&p, "X-Amz-Signature=abc&X-Amz-Date=1", 0), "X-Amz-Date=1&X-Amz-Signature=abc",
           "not presigned keeps it");
    ok_str(cq(&p, "x-amz-signature=abc", 1), "x-amz-signature=abc",
           "only the exact name is dropped");
    ok_str(cq(&p, "a=%G1", 0), "<NULL>", "bad escape in a value");
    ok_str(cq(&p, "a%=1", 0), "<NULL>", "bad escape in a name");
    ok_str(cq(&p, "a=%00", 0), "<NULL>", "decoded NUL");

    /* canonical request rules and errors */
    {
        static const struct sigv4_header h[] = {
            H("HOST", "h"), H("X-Amz-Meta-A", "  one\t\ttwo   three  "), H("x-amz-meta-a", "4"),
            H("x-amz-meta-b", ""), H("x-amz-meta-c", "\t x \t")};
        struct sigv4_request r = {SLICE_LIT("GET"), SLICE_LIT("/"), SLICE_LIT(""), h, 5,
                                  SLICE_LIT("UNSIGNED-PAYLOAD")};

        creq = sigv4_canonical_request(&p, &r, SLICE_LIT("host;x-amz-meta-a;x-amz-meta-b;x-amz-meta-c"),
                                       0, &err);
        ok_str(creq,
               "GET\n/\n\nhost:h\nx-amz-meta-a:one two three,4\nx-amz-meta-b:\nx-amz-meta-c:x\n\n"
               "host;x-amz-meta-a;x-amz-meta-b;x-amz-meta-c\nUNSIGNED-PAYLOAD",
               "names lowercased, values trimmed and folded, repeats joined with ','");
        err = NULL;
        ok(sigv4_canonical_request(&p, &r, SLICE_LIT("host;x-amz-date"), 0, &err) == NULL &&
               err == sigv4_err_missing_header,
           "signed header absent from the request");
        err = NULL;
        ok(sigv4_canonical_request(&p, &r, SLICE_LIT("host;;x-amz-meta-a"), 0, &err) == NULL &&
               err == sigv4_err_signed_headers,
           "empty name in SignedHeaders");
        err = NULL;
        ok(sigv4_canonical_request(&p, &r, SLICE_LIT(""), 0, &err) == NULL &&
               err == sigv4_err_signed_headers,
           "empty SignedHeaders");
        r.query = SLICE_LIT("a=%zz");
        err = NULL;
        ok(sigv4_canonical_request(&p, &r, SLICE_LIT("host"), 0, &err) == NULL &&
               err == sigv4_err_query,
           "bad query");
    }

    /* key cache */
    {
        struct sigv4_key_cache c;
        const uint8_t *k1, *k2;
        int all_ok = 1;
        char region[16];

        sigv4_key_cache_init(&c);
        k1 = sigv4_key_cache_get(&c, SLICE_LIT(AK), SLICE_LIT(SK), SLICE_LIT("20130524"),
                                 SLICE_LIT("us-east-1"), SLICE_LIT("s3"));
        ok(memcmp(k1, key, 32) == 0 && c.misses == 1 && c.hits == 0, "miss derives the key");
        k2 = sigv4_key_cache_get(&c, SLICE_LIT(AK), SLICE_LIT(SK), SLICE_LIT("20130524"),
                                 SLICE_LIT("us-east-1"), SLICE_LIT("s3"));
        ok(k2 == k1 && memcmp(k2, key, 32) == 0 && c.hits == 1, "hit returns the same key");
        k2 = sigv4_key_cache_get(&c, SLICE_LIT(AK), SLICE_LIT("other-secret"),
                                 SLICE_LIT("20130524"), SLICE_LIT("us-east-1"), SLICE_LIT("s3"));
        sigv4_signing_key(SLICE_LIT("other-secret"), SLICE_LIT("20130524"), SLICE_LIT("us-east-1"),
                          SLICE_LIT("s3"), key2);
        ok(c.misses == 2 && memcmp(k2, key, 32) != 0 && memcmp(k2, key2, 32) == 0,
           "changed secret for the same access key: new key");
        k2 = sigv4_key_cache_get(&c, SLICE_LIT(AK), SLICE_LIT(SK), SLICE_LIT("20130525"),
                                 SLICE_LIT("us-east-1"), SLICE_LIT("s3"));
        ok(c.misses == 3 && memcmp(k2, key, 32) != 0, "next day: new key");
        k2 = sigv4_key_cache_get(&c, SLICE_LIT("AKIAIOSFODNN7EXAMPL"), SLICE_LIT("E" SK),
                                 SLICE_LIT("20130524"), SLICE_LIT("us-east-1"), SLICE_LIT("s3"));
        ok(c.misses == 4, "fields cannot run into each other");
        /* touch the first entry, then push 15 others through: it must survive (LRU) */
        sigv4_key_cache_get(&c, SLICE_LIT(AK), SLICE_LIT(SK), SLICE_LIT("20130524"),
                            SLICE_LIT("us-east-1"), SLICE_LIT("s3"));
        for (i = 0; i < SIGV4_KEY_CACHE_SIZE - 1; i++) {
            snprintf(region, sizeof(region), "r%zu", i);
            sigv4_key_cache_get(&c, SLICE_LIT(AK), SLICE_LIT(SK), SLICE_LIT("20130524"),
                                slice_cstr(region), SLICE_LIT("s3"));
        }
        k2 = sigv4_key_cache_get(&c, SLICE_LIT(AK), SLICE_LIT(SK), SLICE_LIT("20130524"),
                                 SLICE_LIT("us-east-1"), SLICE_LIT("s3"));
        ok(c.hits == 3 && memcmp(k2, key, 32) == 0, "recently used entry survives 15 newcomers");
        k2 = sigv4_key_cache_get(&c, SLICE_LIT(AK), SLICE_LIT("other-secret"),
                                 SLICE_LIT("20130524"), SLICE_LIT("us-east-1"), SLICE_LIT("s3"));
        ok(c.hits == 3 && memcmp(k2, key2, 32) == 0, "least recently used entry was evicted");
        for (i = 0; i < 40; i++) {
            snprintf(region, sizeof(region), "z%zu", i % 20);
            k2 = sigv4_key_cache_get(&c, SLICE_LIT(AK), SLICE_LIT(SK), SLICE_LIT("20130524"),
                                     slice_cstr(region), SLICE_LIT("s3"));
            sigv4_signing_key(SLICE_LIT(SK), SLICE_LIT("20130524"), slice_cstr(region),
                              SLICE_LIT("s3"), key2);
            all_ok &= memcmp(k2, key2, 32) == 0;
        }
        ok(all_ok, "every answer under churn is the right key");
        sigv4_key_cache_deinit(&c);
        ok(c.entries == NULL && c.hits == 0,
           "deinit drops the keys (wiped: tests/unit/signing/secmem.c)");
    }

    /* sign_slice and sign agree; sha256 helper */
    sigv4_sign(key, "abc", sig);
    sigv4_sign_slice(key, SLICE_LIT("abcdef"), hex);
    ok(strcmp(sig, hex) != 0, "different strings, different signatures");
    sigv4_sign_slice(key, slice_make("abcdef", 3), hex);
    ok_str(hex, sig, "sign_slice signs only the slice");
    sigv4_sha256_hex("", 0, hex);
    ok_str(hex, EMPTY, "sha256 of nothing");
    pool_deinit(&p);
    return done_testing();
}
