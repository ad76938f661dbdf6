/* Unit tests for proxy/s3addr.c: bucket/key decoding, virtual hosts, operations, upstream paths. */
#include "proxy/s3addr.c"

#include <stdio.h>
#include <stdlib.h>

#include "common/status.h"
#include "test.h"

static struct pool pool;
static char dom_s3[] = "s3.example.com", dom_root[] = "example.com", dom_other[] = "S3.Other.Test.";
static char *domains[] = {dom_s3, dom_root, dom_other};
#define NDOMAINS (sizeof(domains) / sizeof(domains[0]))

static const char *last_code, *last_msg;

static int
addr_flags(const char *method, const char *target, const char *host, unsigned flags,
           struct s3_addr *a)
{
    return s3addr_parse(&pool, slice_cstr(method), slice_cstr(target), slice_cstr(host), domains,
                        NDOMAINS, flags, a, &last_code, &last_msg);
}

static int
addr(const char *method, const char *target, struct s3_addr *a)
{
    return addr_flags(method, target, "s3.example.com:8000", 0, a);
}

static int
slice_is(struct slice s, const char *want)
{
    return slice_eq(s, slice_cstr(want));
}

/* Prints a slice for diagnostics, escaping non-printable bytes. */
static void
show(const char *label, struct slice s)
{
    size_t i;

    printf("#   %s: '", label);
    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];

        if (c >= 0x20 && c < 0x7f) {
            putchar(c);
        } else {
            printf("\\x%02x", c);
        }
    }
    printf("'\n");
}

/*
 * Path-style object request TARGET: expects decoded KEY (KEYLEN bytes), upstream path
 * UPSTREAM, and that parsing UPSTREAM again gives the same bucket and key.
 */
static void
key_case(const char *target, const char *key, size_t keylen, const char *upstream, const char *what)
{
    struct s3_addr a, b;
    char *up;
    int good;

    if (addr("GET", target, &a) != PX_OK) {
        ok(0, "%s: parses (%s: %s)", what, last_code, last_msg);
        return;
    }
    good = a.has_key && a.key.len == keylen && memcmp(a.key.ptr, key, keylen) == 0;
    ok(good, "%s: key decoded", what);
    if (!good) {
        show("key", a.key);
    }
    up = s3addr_upstream_path(&pool, &a);
    ok_str(up, upstream, "%s: upstream path", what);
    good = addr_flags("GET", up, "store.local", 0, &b) == PX_OK && slice_eq(b.bucket, a.bucket) &&
           slice_eq(b.key, a.key) && b.has_key;
    ok(good, "%s: upstream path decodes back to the same bucket and key", what);
}

#define KEY(target, key, upstream, what) key_case(target, key, sizeof(key) - 1, upstream, what)

static void
refused_with(const char *method, const char *target, const char *host, const char *code,
             const char *what)
{
    struct s3_addr a;
    int rc = addr_flags(method, target, host, 0, &a);

    ok(rc == PX_EINVAL && last_code != NULL && strcmp(last_code, code) == 0 && last_msg != NULL,
       "%s -> %s", what, code);
    if (rc != PX_EINVAL || strcmp(last_code, code) != 0) {
        printf("#   got rc %d code %s\n", rc, last_code ? last_code : "(none)");
    }
}

#define REFUSED(target, code, what) refused_with("GET", target, "s3.example.com", code, what)

static void
test_paths(void)
{
    struct s3_addr a;

    ok(addr("GET", "/", &a) == PX_OK && a.bucket.len == 0 && !a.has_key &&
           a.op == S3_OP_LIST_BUCKETS && !a.virtual_host,
       "'/' is the service");
    ok_str(s3addr_upstream_path(&pool, &a), "/", "service upstream path");
    ok(addr("GET", "/bucket", &a) == PX_OK && slice_is(a.bucket, "bucket") && !a.has_key &&
           a.key.len == 0,
       "'/bucket'");
    ok_str(s3addr_upstream_path(&pool, &a), "/bucket", "bucket upstream path");
    ok(addr("GET", "/bucket/", &a) == PX_OK && slice_is(a.bucket, "bucket") && !a.has_key,
       "'/bucket/' is the bucket too");
    ok_str(s3addr_upstream_path(&pool, &a), "/bucket", "'/bucket/' upstream path has no slash");
    ok(addr("GET", "/bu%63ket/k", &a) == PX_OK && slice_is(a.bucket, "bucket"),
       "bucket is percent-decoded");
    ok(addr("GET", "/b%2Dx/k?x=1", &a) == PX_OK && slice_is(a.raw_path, "/b%2Dx/k") &&
           slice_is(a.raw_query, "x=1"),
       "raw path and raw query kept as sent");
    ok(addr("GET", "/bkt/k?", &a) == PX_OK && a.raw_query.len == 0 && a.nparams == 0,
       "empty query");

    KEY("/bkt/key", "key", "/bkt/key", "plain key");
    KEY("/bkt/a%20b", "a b", "/bkt/a%20b", "%20 is a space");
    KEY("/bkt/a+b", "a+b", "/bkt/a%2Bb", "'+' stays '+' in the path");
    KEY("/bkt/a%2Bb", "a+b", "/bkt/a%2Bb", "%2B is '+'");
    KEY("/bkt/100%25", "100%", "/bkt/100%25", "%25 is '%'");
    KEY("/bkt/%25%32%30", "%20", "/bkt/%2520", "no double decoding");
    KEY("/bkt/%E2%82%AC%C3%A9", "\xe2\x82\xac\xc3\xa9", "/bkt/%E2%82%AC%C3%A9", "UTF-8 escapes");
    KEY("/bkt/%e2%82%ac", "\xe2\x82\xac", "/bkt/%E2%82%AC", "lowercase escapes re-encoded upper");
    KEY("/bkt/\xe2\x82\xac", "\xe2\x82\xac", "/bkt/%E2%82%AC", "raw UTF-8 bytes kept");
    KEY("/bkt//a", "/a", "/bkt//a", "'//' after the bucket keeps a leading '/' in the key");
    KEY("/bkt/a//b", "a//b", "/bkt/a//b", "'//' inside the key");
    KEY("/bkt/dir/", "dir/", "/bkt/dir/", "trailing '/' kept");
    KEY("/bkt/a/b/c.txt", "a/b/c.txt", "/bkt/a/b/c.txt", "slashes kept");
    KEY("/bkt/a%2Fb", "a/b", "/bkt/a/b", "%2F decodes to '/'");
    KEY("/bkt/-_.~", "-_.~", "/bkt/-_.~", "unreserved characters");
    KEY("/bkt/!$&'()*,;=:@", "!$&'()*,;=:@", "/bkt/%21%24%26%27%28%29%2A%2C%3B%3D%3A%40",
        "sub-delims are encoded upstream");
    KEY("/bkt/a%3Fb%23c", "a?b#c", "/bkt/a%3Fb%23c", "encoded '?' and '#'");
    KEY("/bkt/..a/a../...", "..a/a../...", "/bkt/..a/a../...", "dots that are not segments");
    KEY("/bkt/.hidden", ".hidden", "/bkt/.hidden", "leading dot in a name");
    KEY("/bkt/%09tab%7F", "\ttab\x7f", "/bkt/%09tab%7F", "control bytes encoded");
    KEY("/My_Legacy.Bucket/k", "k", "/My_Legacy.Bucket/k", "legacy bucket name kept as is");

    REFUSED("bkt/key", "InvalidURI", "path without leading '/'");
    REFUSED("", "InvalidURI", "empty target");
    REFUSED("?x", "InvalidURI", "query only");
    REFUSED("/bkt/a%", "InvalidURI", "'%' at the end");
    REFUSED("/bkt/a%4", "InvalidURI", "'%4' truncated");
    REFUSED("/bkt/a%G1", "InvalidURI", "'%G1'");
    REFUSED("/bkt/a%00b", "InvalidURI", "%00 in the key");
    REFUSED("/bk%00t/a", "InvalidURI", "%00 in the bucket");
    REFUSED("/bk%zzt/a", "InvalidURI", "bad escape in the bucket");
    REFUSED("/bkt/k?a=%", "InvalidURI", "bad escape in a query value");
    REFUSED("/bkt/k?%zz=1", "InvalidURI", "bad escape in a query name");
    REFUSED("/bkt/k?x=%00", "InvalidURI", "%00 in the query");
    REFUSED("/bkt/./k", "InvalidURI", "'.' segment");
    REFUSED("/bkt/../other/k", "InvalidURI", "'..' segment");
    REFUSED("/bkt/a/..", "InvalidURI", "trailing '..'");
    REFUSED("/bkt/a/./", "InvalidURI", "'.' before a trailing '/'");
    REFUSED("/bkt/.", "InvalidURI", "key '.'");
    REFUSED("/bkt/%2E%2E/x", "InvalidURI", "encoded '..' segment");
    REFUSED("/bkt/a%2F..%2Fb", "InvalidURI", "'..' between encoded slashes");
}

static void
test_key_length(void)
{
    char target[8 * 1024];
    struct s3_addr a;
    size_t i;

    strcpy(target, "/bkt/");
    memset(target + 5, 'k', 1024);
    target[5 + 1024] = '\0';
    ok(addr("PUT", target, &a) == PX_OK && a.key.len == 1024 && a.op == S3_OP_PUT_OBJECT,
       "key of exactly 1024 bytes");
    target[5 + 1024] = 'k';
    target[5 + 1025] = '\0';
    REFUSED(target, "KeyTooLongError", "key of 1025 bytes");

    /* the limit is on decoded bytes: 1024 escapes (3072 characters) are fine */
    strcpy(target, "/bkt/");
    for (i = 0; i < 1024; i++) {
        memcpy(target + 5 + 3 * i, "%41", 3);
    }
    target[5 + 3 * 1024] = '\0';
    ok(addr("GET", target, &a) == PX_OK && a.key.len == 1024, "1024 bytes sent as 3072 escapes");
    memcpy(target + 5 + 3 * 1024, "%41", 4);
    REFUSED(target, "KeyTooLongError", "1025 bytes sent as escapes");

    /* multi-byte characters count in bytes */
    strcpy(target, "/bkt/");
    for (i = 0; i < 341; i++) {
        memcpy(target + 5 + 9 * i, "%E2%82%AC", 9);
    }
    strcpy(target + 5 + 9 * 341, "a");
    ok(addr("GET", target, &a) == PX_OK && a.key.len == 1024, "341 euro signs + 1 byte = 1024");
    strcpy(target + 5 + 9 * 341, "ab");
    REFUSED(target, "KeyTooLongError", "341 euro signs + 2 bytes = 1025");

    /* virtual-host keys are bounded the same way */
    target[0] = '/';
    memset(target + 1, 'v', 1025);
    target[1026] = '\0';
    refused_with("GET", target, "bkt.s3.example.com", "KeyTooLongError", "vhost key of 1025 bytes");
    target[1025] = '\0';
    ok(addr_flags("GET", target, "bkt.s3.example.com", 0, &a) == PX_OK && a.key.len == 1024,
       "vhost key of 1024 bytes");
}

static void
test_bucket_names(void)
{
    char target[512];
    struct s3_addr a;

    REFUSED("/ab/k", "InvalidBucketName", "2-byte bucket");
    REFUSED("/ab", "InvalidBucketName", "2-byte bucket, bucket op");
    ok(addr("GET", "/abc/k", &a) == PX_OK, "3-byte bucket");
    REFUSED("//k", "InvalidBucketName", "empty bucket with a key");
    REFUSED("//", "InvalidBucketName", "'//'");
    REFUSED("/b%2Fc/k", "InvalidBucketName", "encoded '/' in the bucket");
    REFUSED("/bu%20ck/k", "InvalidBucketName", "space in the bucket");
    REFUSED("/a%01bc/k", "InvalidBucketName", "control byte in the bucket");
    REFUSED("/abc!/k", "InvalidBucketName", "'!' in the bucket");
    REFUSED("/ab+c/k", "InvalidBucketName", "'+' in the bucket");
    REFUSED("/.abc/k", "InvalidBucketName", "leading '.'");
    REFUSED("/-abc/k", "InvalidBucketName", "leading '-'");
    REFUSED("/_abc/k", "InvalidBucketName", "leading '_'");
    REFUSED("/.../k", "InvalidBucketName", "'...'");
    REFUSED("/b\xc3\xa9t/k", "InvalidBucketName", "non-ASCII bucket");
    ok(addr("GET", "/my.bucket-1/k", &a) == PX_OK, "dots and dashes");
    ok(addr("GET", "/Legacy_Bucket/k", &a) == PX_OK && slice_is(a.bucket, "Legacy_Bucket"),
       "legacy uppercase and underscore accepted, case kept");
    target[0] = '/';
    memset(target + 1, 'b', 255);
    strcpy(target + 256, "/k");
    ok(addr("GET", target, &a) == PX_OK && a.bucket.len == 255, "255-byte bucket");
    memset(target + 1, 'b', 256);
    strcpy(target + 257, "/k");
    REFUSED(target, "InvalidBucketName", "256-byte bucket");
}

static void
test_vhost(void)
{
    struct s3_addr a;

    ok(addr_flags("GET", "/key", "mybucket.s3.example.com", 0, &a) == PX_OK && a.virtual_host &&
           slice_is(a.bucket, "mybucket") && a.has_key && slice_is(a.key, "key") &&
           a.op == S3_OP_GET_OBJECT,
       "virtual host: bucket from Host, key from the path");
    ok_str(s3addr_upstream_path(&pool, &a), "/mybucket/key", "vhost upstream is path-style");
    ok(addr_flags("GET", "/key", "mybucket.s3.example.com:8443", 0, &a) == PX_OK &&
           a.virtual_host && slice_is(a.bucket, "mybucket"),
       "virtual host with a port");
    ok(addr_flags("GET", "/k", "MyBucket.S3.EXAMPLE.com", 0, &a) == PX_OK && a.virtual_host &&
           slice_is(a.bucket, "mybucket"),
       "Host compared case-insensitively; bucket lowercased");
    ok(addr_flags("GET", "/k", "bkt.s3.example.com.", 0, &a) == PX_OK && a.virtual_host &&
           slice_is(a.bucket, "bkt"),
       "fully qualified Host with a trailing dot");
    ok(addr_flags("GET", "/k", "bkt.s3.other.test:80", 0, &a) == PX_OK && a.virtual_host &&
           slice_is(a.bucket, "bkt"),
       "configured domain in another case, with a trailing dot");
    ok(addr_flags("GET", "/k", "my.dotted.bucket.s3.example.com", 0, &a) == PX_OK &&
           slice_is(a.bucket, "my.dotted.bucket"),
       "dotted bucket name");
    ok(addr_flags("GET", "/k", "bkt.s3.example.com", 0, &a) == PX_OK && slice_is(a.bucket, "bkt"),
       "longest matching domain wins (s3.example.com over example.com)");
    ok(addr_flags("GET", "/k", "bkt.example.com", 0, &a) == PX_OK && slice_is(a.bucket, "bkt"),
       "the shorter domain still matches its own buckets");
    ok(addr_flags("GET", "/", "bkt.s3.example.com", 0, &a) == PX_OK && a.virtual_host &&
           slice_is(a.bucket, "bkt") && !a.has_key && a.op == S3_OP_LIST_OBJECTS,
       "vhost '/' is the bucket");
    ok_str(s3addr_upstream_path(&pool, &a), "/bkt", "vhost bucket upstream path");
    ok(addr_flags("GET", "//a", "bkt.s3.example.com", 0, &a) == PX_OK && slice_is(a.key, "/a"),
       "vhost '//a' is key '/a'");
    ok_str(s3addr_upstream_path(&pool, &a), "/bkt//a", "vhost '//a' upstream");
    ok(addr_flags("GET", "/dir/", "bkt.s3.example.com", 0, &a) == PX_OK && slice_is(a.key, "dir/"),
       "vhost trailing slash kept");
    ok(addr_flags("GET", "/other/key", "bkt.s3.example.com", 0, &a) == PX_OK &&
           slice_is(a.bucket, "bkt") && slice_is(a.key, "other/key"),
       "vhost: a path that looks path-style is all key");
    ok(addr_flags("GET", "/a%20b+c", "bkt.s3.example.com", 0, &a) == PX_OK &&
           slice_is(a.key, "a b+c"),
       "vhost key decoded like path-style");

    ok(addr_flags("GET", "/bkt/k", "s3.example.com", 0, &a) == PX_OK && !a.virtual_host &&
           slice_is(a.bucket, "bkt") && slice_is(a.key, "k"),
       "Host equal to a domain: path-style");
    ok(addr_flags("GET", "/bkt/k", "S3.example.com:443", 0, &a) == PX_OK && !a.virtual_host &&
           slice_is(a.bucket, "bkt"),
       "Host equal to a domain with a port: path-style");
    ok(addr_flags("GET", "/bkt/k", "storage.internal", 0, &a) == PX_OK && !a.virtual_host &&
           slice_is(a.bucket, "bkt"),
       "unknown Host: path-style");
    ok(addr_flags("GET", "/bkt/k", "127.0.0.1:8000", 0, &a) == PX_OK && !a.virtual_host,
       "IPv4 Host: path-style");
    ok(addr_flags("GET", "/bkt/k", "[::1]:8000", 0, &a) == PX_OK && !a.virtual_host,
       "IPv6 Host: path-style");
    ok(addr_flags("GET", "/bkt/k", "", 0, &a) == PX_OK && !a.virtual_host &&
           slice_is(a.bucket, "bkt"),
       "no Host: path-style");
    refused_with("GET", "/k", ".s3.example.com", "InvalidBucketName",
                 "'.s3' is a (bad) bucket of example.com");
    ok(addr_flags("GET", "/bkt/k", "xs3.example.com", 0, &a) == PX_OK && a.virtual_host &&
           slice_is(a.bucket, "xs3") && slice_is(a.key, "bkt/k"),
       "suffix match needs a '.' boundary (xs3 is a bucket of example.com)");
    {
        char *only[] = {dom_s3};

        ok(s3addr_parse(&pool, SLICE_LIT("GET"), SLICE_LIT("/bkt/k"), SLICE_LIT("xs3.example.com"),
                        only, 1, 0, &a, &last_code, &last_msg) == PX_OK &&
               !a.virtual_host && slice_is(a.bucket, "bkt"),
           "'xs3.example.com' is not a bucket of 's3.example.com'");
        ok(s3addr_parse(&pool, SLICE_LIT("GET"), SLICE_LIT("/bkt/k"),
                        SLICE_LIT("bkt.s3.example.com"), NULL, 0, 0, &a, &last_code,
                        &last_msg) == PX_OK &&
               !a.virtual_host,
           "no domains configured: always path-style");
        ok(s3addr_parse(&pool, SLICE_LIT("GET"), SLICE_LIT("/bkt/k"), SLICE_LIT(".s3.example.com"),
                        only, 1, 0, &a, &last_code, &last_msg) == PX_OK &&
               !a.virtual_host,
           "empty label before the domain: path-style");
    }
    refused_with("GET", "/k", "ab.s3.example.com", "InvalidBucketName", "vhost bucket too short");
    refused_with("GET", "/k", "-ab.s3.example.com", "InvalidBucketName", "vhost bucket '-ab'");
    refused_with("GET", "/k", "a!b.s3.example.com", "InvalidBucketName", "vhost bucket 'a!b'");
    refused_with("GET", "/./k", "bkt.s3.example.com", "InvalidURI", "vhost '.' segment");
    refused_with("GET", "k", "bkt.s3.example.com", "InvalidURI", "vhost path without '/'");
}

static void
test_query(void)
{
    struct s3_addr a;
    const struct s3_param *p;

    ok(addr("GET", "/bkt?prefix=a%20b&max-keys=10&delimiter=%2F&x=a+b&flag&&empty=&%6Cist-type=2",
            &a) == PX_OK,
       "query parses");
    ok(a.nparams == 7, "seven parameters (the empty element is skipped)");
    p = s3addr_param(&a, "prefix");
    ok(p && p->has_value && slice_is(p->value, "a b"), "value decoded (%%20)");
    p = s3addr_param(&a, "delimiter");
    ok(p && slice_is(p->value, "/"), "%%2F decoded");
    p = s3addr_param(&a, "x");
    ok(p && slice_is(p->value, "a+b"), "'+' stays '+' in the query");
    p = s3addr_param(&a, "flag");
    ok(p && !p->has_value && p->value.len == 0, "name without '=' has no value");
    p = s3addr_param(&a, "empty");
    ok(p && p->has_value && p->value.len == 0, "name with '=' has an empty value");
    ok(s3addr_param(&a, "list-type") != NULL && a.op == S3_OP_LIST_OBJECTS_V2,
       "names are decoded too (%%6Cist-type)");
    ok(s3addr_param(&a, "missing") == NULL, "absent parameter");
    ok(s3addr_param(&a, "PREFIX") == NULL, "names are case-sensitive");
    ok(addr("GET", "/bkt?a=1&a=2", &a) == PX_OK && slice_is(s3addr_param(&a, "a")->value, "1"),
       "repeated name: the first wins");
    ok(addr("GET", "/bkt?k=a=b", &a) == PX_OK && slice_is(s3addr_param(&a, "k")->value, "a=b"),
       "value split at the first '='");
    ok(addr("GET", "/bkt?&&", &a) == PX_OK && a.nparams == 0, "only separators");
}

struct op_case {
    const char *method;
    const char *target;
    const char *host; /* NULL: path-style host */
    unsigned flags;
    enum s3_op op;
    const char *sub; /* expected subresource or NULL */
};

static const struct op_case op_cases[] = {
    {"GET", "/", NULL, 0, S3_OP_LIST_BUCKETS, NULL},
    {"PUT", "/", NULL, 0, S3_OP_UNKNOWN, NULL},
    {"HEAD", "/", NULL, 0, S3_OP_UNKNOWN, NULL},
    {"PUT", "/bkt", NULL, 0, S3_OP_CREATE_BUCKET, NULL},
    {"PUT", "/bkt/", NULL, 0, S3_OP_CREATE_BUCKET, NULL},
    {"DELETE", "/bkt", NULL, 0, S3_OP_DELETE_BUCKET, NULL},
    {"HEAD", "/bkt", NULL, 0, S3_OP_HEAD_BUCKET, NULL},
    {"GET", "/bkt", NULL, 0, S3_OP_LIST_OBJECTS, NULL},
    {"GET", "/bkt?prefix=a&marker=b", NULL, 0, S3_OP_LIST_OBJECTS, NULL},
    {"GET", "/bkt?list-type=1", NULL, 0, S3_OP_LIST_OBJECTS, NULL},
    {"GET", "/bkt?list-type=2&prefix=x", NULL, 0, S3_OP_LIST_OBJECTS_V2, "list-type"},
    {"GET", "/bkt?versions", NULL, 0, S3_OP_LIST_OBJECT_VERSIONS, "versions"},
    {"GET", "/bkt?versions&prefix=a", NULL, 0, S3_OP_LIST_OBJECT_VERSIONS, "versions"},
    {"GET", "/bkt?uploads", NULL, 0, S3_OP_LIST_MULTIPART_UPLOADS, "uploads"},
    {"PUT", "/bkt?uploads", NULL, 0, S3_OP_UNKNOWN, "uploads"},
    {"POST", "/bkt?delete", NULL, 0, S3_OP_DELETE_OBJECTS, "delete"},
    {"POST", "/bkt?delete=", NULL, 0, S3_OP_DELETE_OBJECTS, "delete"},
    {"GET", "/bkt?delete", NULL, 0, S3_OP_UNKNOWN, "delete"},
    {"POST", "/bkt", NULL, 0, S3_OP_POST_OBJECT, NULL},
    {"GET", "/bkt?versioning", NULL, 0, S3_OP_GET_BUCKET_CONFIG, "versioning"},
    {"PUT", "/bkt?versioning", NULL, 0, S3_OP_PUT_BUCKET_CONFIG, "versioning"},
    {"PUT", "/bkt?lifecycle", NULL, 0, S3_OP_PUT_BUCKET_CONFIG, "lifecycle"},
    {"DELETE", "/bkt?lifecycle", NULL, 0, S3_OP_DELETE_BUCKET_CONFIG, "lifecycle"},
    {"GET", "/bkt?policy", NULL, 0, S3_OP_GET_BUCKET_CONFIG, "policy"},
    {"DELETE", "/bkt?policy", NULL, 0, S3_OP_DELETE_BUCKET_CONFIG, "policy"},
    {"GET", "/bkt?acl", NULL, 0, S3_OP_GET_BUCKET_CONFIG, "acl"},
    {"PUT", "/bkt?cors", NULL, 0, S3_OP_PUT_BUCKET_CONFIG, "cors"},
    {"GET", "/bkt?location", NULL, 0, S3_OP_GET_BUCKET_CONFIG, "location"},
    {"GET", "/bkt?object-lock", NULL, 0, S3_OP_GET_BUCKET_CONFIG, "object-lock"},
    {"PUT", "/bkt?notification", NULL, 0, S3_OP_PUT_BUCKET_CONFIG, "notification"},
    {"PUT", "/bkt?replication", NULL, 0, S3_OP_PUT_BUCKET_CONFIG, "replication"},
    {"DELETE", "/bkt?encryption", NULL, 0, S3_OP_DELETE_BUCKET_CONFIG, "encryption"},
    {"PUT", "/bkt?website", NULL, 0, S3_OP_PUT_BUCKET_CONFIG, "website"},
    {"GET", "/bkt?logging", NULL, 0, S3_OP_GET_BUCKET_CONFIG, "logging"},
    {"PUT", "/bkt?tagging", NULL, 0, S3_OP_PUT_BUCKET_CONFIG, "tagging"},
    {"DELETE", "/bkt?tagging", NULL, 0, S3_OP_DELETE_BUCKET_CONFIG, "tagging"},
    {"GET", "/bkt?publicAccessBlock", NULL, 0, S3_OP_GET_BUCKET_CONFIG, "publicAccessBlock"},
    {"POST", "/bkt?versioning", NULL, 0, S3_OP_UNKNOWN, "versioning"},
    {"HEAD", "/bkt?acl", NULL, 0, S3_OP_UNKNOWN, "acl"},
    {"PATCH", "/bkt", NULL, 0, S3_OP_UNKNOWN, NULL},

    {"GET", "/bkt/k", NULL, 0, S3_OP_GET_OBJECT, NULL},
    {"GET", "/bkt/k?versionId=3&response-content-type=x", NULL, 0, S3_OP_GET_OBJECT, NULL},
    {"HEAD", "/bkt/k", NULL, 0, S3_OP_HEAD_OBJECT, NULL},
    {"PUT", "/bkt/k", NULL, 0, S3_OP_PUT_OBJECT, NULL},
    {"PUT", "/bkt/k", NULL, S3ADDR_COPY_SOURCE, S3_OP_COPY_OBJECT, NULL},
    {"GET", "/bkt/k", NULL, S3ADDR_COPY_SOURCE, S3_OP_GET_OBJECT, NULL},
    {"DELETE", "/bkt/k", NULL, 0, S3_OP_DELETE_OBJECT, NULL},
    {"DELETE", "/bkt/k?versionId=x", NULL, 0, S3_OP_DELETE_OBJECT, NULL},
    {"POST", "/bkt/k", NULL, 0, S3_OP_UNKNOWN, NULL},
    {"OPTIONS", "/bkt/k", NULL, 0, S3_OP_UNKNOWN, NULL},
    {"get", "/bkt/k", NULL, 0, S3_OP_UNKNOWN, NULL},
    {"GET", "/bkt/uploads", NULL, 0, S3_OP_GET_OBJECT, NULL},
    {"POST", "/bkt/k?uploads", NULL, 0, S3_OP_CREATE_MULTIPART, "uploads"},
    {"GET", "/bkt/k?uploads", NULL, 0, S3_OP_UNKNOWN, "uploads"},
    {"PUT", "/bkt/k?partNumber=1&uploadId=abc", NULL, 0, S3_OP_UPLOAD_PART, "uploadId"},
    {"PUT", "/bkt/k?uploadId=abc&partNumber=2", NULL, S3ADDR_COPY_SOURCE, S3_OP_UPLOAD_PART_COPY,
     "uploadId"},
    {"PUT", "/bkt/k?uploadId=abc", NULL, 0, S3_OP_UNKNOWN, "uploadId"},
    {"POST", "/bkt/k?uploadId=abc", NULL, 0, S3_OP_COMPLETE_MULTIPART, "uploadId"},
    {"DELETE", "/bkt/k?uploadId=abc", NULL, 0, S3_OP_ABORT_MULTIPART, "uploadId"},
    {"GET", "/bkt/k?uploadId=abc&max-parts=10", NULL, 0, S3_OP_LIST_PARTS, "uploadId"},
    {"HEAD", "/bkt/k?uploadId=abc", NULL, 0, S3_OP_UNKNOWN, "uploadId"},
    {"GET", "/bkt/k?tagging", NULL, 0, S3_OP_GET_OBJECT_TAGGING, "tagging"},
    {"PUT", "/bkt/k?tagging", NULL, 0, S3_OP_PUT_OBJECT_TAGGING, "tagging"},
    {"DELETE", "/bkt/k?tagging", NULL, 0, S3_OP_DELETE_OBJECT_TAGGING, "tagging"},
    {"PUT", "/bkt/k?tagging&versionId=1", NULL, 0, S3_OP_PUT_OBJECT_TAGGING, "tagging"},
    {"GET", "/bkt/k?acl", NULL, 0, S3_OP_GET_OBJECT_CONFIG, "acl"},
    {"PUT", "/bkt/k?acl", NULL, 0, S3_OP_PUT_OBJECT_CONFIG, "acl"},
    {"DELETE", "/bkt/k?acl", NULL, 0, S3_OP_UNKNOWN, "acl"},
    {"GET", "/bkt/k?retention", NULL, 0, S3_OP_GET_OBJECT_CONFIG, "retention"},
    {"PUT", "/bkt/k?retention", NULL, 0, S3_OP_PUT_OBJECT_CONFIG, "retention"},
    {"PUT", "/bkt/k?legal-hold", NULL, 0, S3_OP_PUT_OBJECT_CONFIG, "legal-hold"},
    {"GET", "/bkt/k?attributes", NULL, 0, S3_OP_GET_OBJECT_CONFIG, "attributes"},
    {"PUT", "/bkt/k?attributes", NULL, 0, S3_OP_UNKNOWN, "attributes"},
    {"POST", "/bkt/k?restore", NULL, 0, S3_OP_UNKNOWN, "restore"},
    {"POST", "/bkt/k?select&select-type=2", NULL, 0, S3_OP_UNKNOWN, "select"},
    {"PUT", "/bkt/k?versioning", NULL, 0, S3_OP_PUT_OBJECT, NULL},

    {"GET", "/", "bkt.s3.example.com", 0, S3_OP_LIST_OBJECTS, NULL},
    {"GET", "/?list-type=2", "bkt.s3.example.com", 0, S3_OP_LIST_OBJECTS_V2, "list-type"},
    {"GET", "/?uploads", "bkt.s3.example.com", 0, S3_OP_LIST_MULTIPART_UPLOADS, "uploads"},
    {"POST", "/?delete", "bkt.s3.example.com", 0, S3_OP_DELETE_OBJECTS, "delete"},
    {"PUT", "/", "bkt.s3.example.com", 0, S3_OP_CREATE_BUCKET, NULL},
    {"PUT", "/?versioning", "bkt.s3.example.com", 0, S3_OP_PUT_BUCKET_CONFIG, "versioning"},
    {"PUT", "/k", "bkt.s3.example.com", 0, S3_OP_PUT_OBJECT, NULL},
    {"PUT", "/k", "bkt.s3.example.com", S3ADDR_COPY_SOURCE, S3_OP_COPY_OBJECT, NULL},
    {"POST", "/k?uploadId=u", "bkt.s3.example.com", 0, S3_OP_COMPLETE_MULTIPART, "uploadId"},
    {"GET", "/bkt", "bkt.s3.example.com", 0, S3_OP_GET_OBJECT, NULL},
};

static void
test_part_numbers(void)
{
    static const char *const bad[] = {"0", "10001", "-1", "+1", "1x", "", "99999999999999999999"};
    struct s3_addr a;
    size_t i;
    char target[128];

    ok(addr("PUT", "/bkt/k?partNumber=1&uploadId=u", &a) == PX_OK && a.op == S3_OP_UPLOAD_PART,
       "part 1");
    ok(addr("PUT", "/bkt/k?partNumber=10000&uploadId=u", &a) == PX_OK &&
           a.op == S3_OP_UPLOAD_PART,
       "part 10000");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(target, sizeof(target), "/bkt/k?partNumber=%s&uploadId=u", bad[i]);
        refused_with("PUT", target, "s3.example.com", "InvalidArgument", target);
    }
    {
        int rc = addr_flags("PUT", "/bkt/k?partNumber=10001&uploadId=u", "s3.example.com",
                            S3ADDR_COPY_SOURCE, &a);

        ok(rc == PX_EINVAL && strcmp(last_code, "InvalidArgument") == 0,
           "UploadPartCopy to part 10001");
    }
    ok(addr("GET", "/bkt/k?partNumber=10001", &a) == PX_OK, "GetObject ?partNumber: not ours");
}

static void
test_ops(void)
{
    size_t i;

    for (i = 0; i < sizeof(op_cases) / sizeof(op_cases[0]); i++) {
        const struct op_case *c = &op_cases[i];
        struct s3_addr a;
        int rc =
            addr_flags(c->method, c->target, c->host ? c->host : "s3.example.com", c->flags, &a);
        int good =
            rc == PX_OK && a.op == c->op &&
            ((c->sub == NULL && a.subresource == NULL) ||
             (c->sub != NULL && a.subresource != NULL && strcmp(c->sub, a.subresource) == 0));

        ok(good, "%s %s%s%s -> %s", c->method, c->host ? c->host : "", c->target,
           c->flags ? " (copy source)" : "", s3_op_name(c->op));
        if (!good) {
            printf("#   got rc %d op %s sub %s\n", rc, s3_op_name(a.op),
                   a.subresource ? a.subresource : "(null)");
        }
    }
}

static void
test_op_names(void)
{
    static const enum s3_op mutations[] = {
        S3_OP_PUT_OBJECT,
        S3_OP_COPY_OBJECT,
        S3_OP_DELETE_OBJECT,
        S3_OP_DELETE_OBJECTS,
        S3_OP_COMPLETE_MULTIPART,
        S3_OP_PUT_OBJECT_TAGGING,
        S3_OP_DELETE_OBJECT_TAGGING,
        S3_OP_PUT_OBJECT_CONFIG,
    };
    int op, names_ok = 1, unique = 1, mut_ok = 1;

    ok_str(s3_op_name(S3_OP_PUT_OBJECT), "PutObject", "name PutObject");
    ok_str(s3_op_name(S3_OP_LIST_OBJECTS_V2), "ListObjectsV2", "name ListObjectsV2");
    ok_str(s3_op_name(S3_OP_COMPLETE_MULTIPART), "CompleteMultipartUpload",
           "name CompleteMultipartUpload");
    ok_str(s3_op_name(S3_OP_CREATE_MULTIPART), "CreateMultipartUpload",
           "name CreateMultipartUpload");
    ok_str(s3_op_name(S3_OP_UPLOAD_PART_COPY), "UploadPartCopy", "name UploadPartCopy");
    ok_str(s3_op_name(S3_OP_DELETE_OBJECTS), "DeleteObjects", "name DeleteObjects");
    ok_str(s3_op_name(S3_OP_LIST_BUCKETS), "ListBuckets", "name ListBuckets");
    ok_str(s3_op_name(S3_OP_UNKNOWN), "Unknown", "name Unknown");
    ok_str(s3_op_name((enum s3_op)9999), "Unknown", "out-of-range op -> Unknown");
    for (op = S3_OP_UNKNOWN; op <= S3_OP_POST_OBJECT; op++) {
        int other;
        size_t j;
        int want_mut = 0;

        names_ok &= s3_op_name((enum s3_op)op) != NULL &&
                    (op == S3_OP_UNKNOWN || strcmp(s3_op_name((enum s3_op)op), "Unknown") != 0);
        for (other = S3_OP_UNKNOWN; other < op; other++) {
            unique &= strcmp(s3_op_name((enum s3_op)op), s3_op_name((enum s3_op)other)) != 0;
        }
        for (j = 0; j < sizeof(mutations) / sizeof(mutations[0]); j++) {
            want_mut |= mutations[j] == (enum s3_op)op;
        }
        if (s3_op_is_mutation((enum s3_op)op) != want_mut) {
            mut_ok = 0;
            printf("#   %s mutation flag wrong\n", s3_op_name((enum s3_op)op));
        }
    }
    ok(names_ok, "every op has a name");
    ok(unique, "op names are unique");
    ok(mut_ok, "s3_op_is_mutation is true exactly for the object-changing ops");
}

int
main(void)
{
    pool_init(&pool);
    test_paths();
    test_key_length();
    test_bucket_names();
    test_vhost();
    test_query();
    test_part_numbers();
    test_ops();
    test_op_names();
    pool_deinit(&pool);
    return done_testing();
}
