/*
 * Unit tests for replicator/sites.c: SigV4 signing of replica requests, checked against
 * vectors computed once with botocore 1.29 (Debian's /usr/bin/python3):
 *
 *   from botocore.awsrequest import AWSRequest
 *   from botocore.auth import S3SigV4Auth
 *   from botocore.config import Config
 *   from botocore.credentials import Credentials
 *   req = AWSRequest(method='PUT', url='https://127.0.0.1:8002/photos/dir/a%20b%2Bc%C3%A9.jpg',
 *                    headers={...the headers below, 'host': '127.0.0.1:8002'}, data=b'')
 *   req.context['client_config'] = Config(s3={'payload_signing_enabled': False})
 *   # datetime.datetime.utcnow() patched to 2026-11-22 10:00:00; canonical_request()
 *   # captured from inside add_auth() (a subclass), then req.headers['Authorization']
 *   S3SigV4Auth(Credentials('AKTOB', 'secret/tob+x'), 's3', 'us-east-1').add_auth(req)
 *
 * The requests are built by apply_peer_request(), the way the replicator sends them.
 */
#include "replicator/sites.c"
#include "replicator/apply.c"

#include <time.h>

#include "test.h"

#define VECTOR_TIME 1795341600 /* 2026-11-22T10:00:00Z */

static const char want_creq_put[] =
    "PUT\n"
    "/photos/dir/a%20b%2Bc%C3%A9.jpg\n"
    "\n"
    "content-type:image/jpeg\n"
    "host:127.0.0.1:8002\n"
    "x-amz-content-sha256:UNSIGNED-PAYLOAD\n"
    "x-amz-date:20261122T100000Z\n"
    "x-amz-meta-color:blue\n"
    "x-amz-tagging:a=1&b=x%20y\n"
    "x-s3tee-origin-etag:\"9b2cf535f27731c974343645a3985328\"\n"
    "x-s3tee-stamp:0191f2a3b4c50001.a\n"
    "x-s3tee-tag-stamp:0191f2a3b4c50001.a\n"
    "x-s3tee-vv:a=3;b=5\n"
    "\n"
    "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-color;x-amz-tagging;"
    "x-s3tee-origin-etag;x-s3tee-stamp;x-s3tee-tag-stamp;x-s3tee-vv\n"
    "UNSIGNED-PAYLOAD";

static const char want_auth_put[] =
    "Authorization: AWS4-HMAC-SHA256 Credential=AKTOB/20261122/us-east-1/s3/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-color;"
    "x-amz-tagging;x-s3tee-origin-etag;x-s3tee-stamp;x-s3tee-tag-stamp;x-s3tee-vv, "
    "Signature=da235d6db8ceba406a0e2f8a78c420936f58ce7a40d71b6d711ba3f1d260d5bf";

static const char want_creq_part[] =
    "PUT\n"
    "/photos/big.bin\n"
    "partNumber=3&uploadId=2~abc_DEF-1.x%2Fy\n"
    "host:127.0.0.1:8002\n"
    "x-amz-content-sha256:UNSIGNED-PAYLOAD\n"
    "x-amz-date:20261122T100000Z\n"
    "x-s3tee-origin-etag:\"abc-2\"\n"
    "x-s3tee-stamp:0191f2a3b4c50001.a\n"
    "x-s3tee-tag-stamp:0191f2a3b4c50001.a\n"
    "x-s3tee-vv:a=3;b=5\n"
    "\n"
    "host;x-amz-content-sha256;x-amz-date;x-s3tee-origin-etag;x-s3tee-stamp;x-s3tee-tag-stamp;"
    "x-s3tee-vv\n"
    "UNSIGNED-PAYLOAD";

static const char want_auth_part[] =
    "Authorization: AWS4-HMAC-SHA256 Credential=AKTOB/20261122/us-east-1/s3/aws4_request, "
    "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-s3tee-origin-etag;x-s3tee-stamp;"
    "x-s3tee-tag-stamp;x-s3tee-vv, "
    "Signature=bc88d1e61296bd32b7868675f0c33c21356280f4ddfb913c7ee277bf3de8c715";

static struct mutation
put_entry(const char *key, const char *etag, const char *tags, const char *parts)
{
    struct mutation m;

    memset(&m, 0, sizeof(m));
    m.op = MUT_PUT;
    m.bucket = SLICE_LIT("photos");
    m.key = slice_cstr(key);
    m.stamp = SLICE_LIT("0191f2a3b4c50001.a");
    m.vv = SLICE_LIT("a=3;b=5");
    m.etag = slice_cstr(etag);
    m.tags = slice_cstr(tags);
    m.parts = slice_cstr(parts);
    m.size = -1;
    return m;
}

/* The line of LINES starting with PREFIX, or NULL. */
static const char *
find_line(const char **lines, const char *prefix)
{
    size_t i;

    for (i = 0; lines[i] != NULL; i++) {
        if (strncmp(lines[i], prefix, strlen(prefix)) == 0) {
            return lines[i];
        }
    }
    return NULL;
}

static void
test_put_vector(void)
{
    struct sigv4_key_cache kc;
    struct pool p;
    struct mutation m = put_entry("dir/a b+c\xc3\xa9.jpg", "\"9b2cf535f27731c974343645a3985328\"",
                                  "a=1&b=x%20y", "");
    struct sigv4_header meta[2] = {{SLICE_LIT("content-type"), SLICE_LIT("image/jpeg")},
                                   {SLICE_LIT("x-amz-meta-color"), SLICE_LIT("blue")}};
    struct apply_peer_args pa;
    struct sites_request rq;
    const char **lines;
    char *creq = NULL;

    pool_init(&p);
    sigv4_key_cache_init(&kc);
    memset(&pa, 0, sizeof(pa));
    pa.meta = meta;
    pa.nmeta = 2;
    apply_peer_request(&p, &m, APPLY_STEP_PUT, &pa, &rq);
    lines = sites_sign(&p, &kc, "AKTOB", "secret/tob+x", "us-east-1", "127.0.0.1:8002", &rq,
                       (time_t)VECTOR_TIME, &creq);
    ok(lines != NULL, "PUT: signed");
    ok_str(creq, want_creq_put, "PUT: canonical request matches botocore");
    ok_str(lines ? find_line(lines, "Authorization:") : NULL, want_auth_put,
           "PUT: Authorization matches botocore");
    ok_str(lines ? find_line(lines, "host:") : NULL, "host: 127.0.0.1:8002", "PUT: Host line sent");
    ok_str(lines ? find_line(lines, "x-amz-date:") : NULL, "x-amz-date: 20261122T100000Z",
           "PUT: x-amz-date line sent");
    ok_str(lines ? find_line(lines, "x-amz-content-sha256:") : NULL,
           "x-amz-content-sha256: UNSIGNED-PAYLOAD", "PUT: payload is UNSIGNED-PAYLOAD");
    ok(lines && strcmp(lines[0], "content-type: image/jpeg") == 0 &&
           find_line(lines, "Authorization:") == lines[10] && lines[11] == NULL,
       "PUT: lines sorted by name, Authorization last, NULL-terminated");
    ok(lines && find_line(lines, "Authorization:") != NULL &&
           strstr(find_line(lines, "Authorization:"), "secret") == NULL,
       "PUT: the secret is not in any header");
    /* the key cache: a second signing the same day derives nothing */
    sites_sign(&p, &kc, "AKTOB", "secret/tob+x", "us-east-1", "127.0.0.1:8002", &rq,
               (time_t)VECTOR_TIME + 60, NULL);
    ok(kc.misses == 1 && kc.hits == 1, "key cache: one derivation, one hit");
    sigv4_key_cache_deinit(&kc);
    pool_deinit(&p);
}

static void
test_part_vector(void)
{
    struct sigv4_key_cache kc;
    struct pool p;
    struct mutation m = put_entry("big.bin", "\"abc-2\"", "a=1", "5242880,1");
    struct apply_peer_args pa;
    struct sites_request rq;
    const char **lines;
    char *creq = NULL;

    pool_init(&p);
    sigv4_key_cache_init(&kc);
    memset(&pa, 0, sizeof(pa));
    pa.part = 3;
    pa.upload_id = "2~abc_DEF-1.x/y";
    apply_peer_request(&p, &m, APPLY_STEP_PART, &pa, &rq);
    ok_str(rq.query, "partNumber=3&uploadId=2~abc_DEF-1.x%2Fy", "part: upload id encoded");
    lines = sites_sign(&p, &kc, "AKTOB", "secret/tob+x", "us-east-1", "127.0.0.1:8002", &rq,
                       (time_t)VECTOR_TIME, &creq);
    ok_str(creq, want_creq_part, "part: canonical request matches botocore (no tagging header)");
    ok_str(lines ? find_line(lines, "Authorization:") : NULL, want_auth_part,
           "part: Authorization matches botocore");
    sigv4_key_cache_deinit(&kc);
    pool_deinit(&p);
}

static void
test_store_request(void)
{
    struct sigv4_key_cache kc;
    struct pool p;
    struct mutation m = put_entry("k", "", "", "");
    struct sites_request rq;
    const char **lines;
    char *creq = NULL;

    pool_init(&p);
    sigv4_key_cache_init(&kc);
    apply_store_request(&p, &m, "GET", 5, 10, &rq);
    lines = sites_sign(&p, &kc, "AKSTORE", "s", "us-east-1", "store:8000", &rq, (time_t)VECTOR_TIME,
                       &creq);
    ok(lines && find_line(lines, "range: bytes=5-14") != NULL, "store GET: Range line");
    ok(creq && strstr(creq, "\nhost;range;x-amz-content-sha256;x-amz-date\n" SIGV4_EMPTY_SHA256) !=
                   NULL,
       "store GET: range signed, payload is the empty hash");
    ok(lines && strstr(find_line(lines, "Authorization:"), "Credential=AKSTORE/20261122/") != NULL,
       "store GET: signed with the store key");
    sigv4_key_cache_deinit(&kc);
    pool_deinit(&p);
}

static void
test_sort_stable(void)
{
    struct sigv4_header h[4] = {{SLICE_LIT("x-b"), SLICE_LIT("1")},
                                {SLICE_LIT("x-a"), SLICE_LIT("2")},
                                {SLICE_LIT("x-b"), SLICE_LIT("3")},
                                {SLICE_LIT("x-a"), SLICE_LIT("4")}};

    sort_headers(h, 4);
    ok(slice_eq(h[0].value, SLICE_LIT("2")) && slice_eq(h[1].value, SLICE_LIT("4")) &&
           slice_eq(h[2].value, SLICE_LIT("1")) && slice_eq(h[3].value, SLICE_LIT("3")),
       "header sort is stable (repeated names keep their order)");
}

int
main(void)
{
    test_put_vector();
    test_part_vector();
    test_store_request();
    test_sort_stable();
    return done_testing();
}
