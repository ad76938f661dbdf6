/*
 * fuzz_s3addr.c - proxy/s3addr.c: path-style and virtual-host addressing, query parameters,
 * percent-decoding, the operation.
 *
 * Input: one byte for the method, one for the flags, then "HOST\nTARGET" (no newline: the
 * whole rest is the target, host empty). Checks on a parse that succeeds:
 *   - bucket empty or 3..255 bytes of [A-Za-z0-9._-] starting alphanumeric; key <= 1024
 *     bytes; a key only with a bucket; raw path and query are pieces of TARGET;
 *   - the path we send the store (s3addr_upstream_path) parsed again, path-style, with the
 *     same query, names the same bucket, key and operation: what we authorised is what the
 *     store writes and what we replicate;
 *   - every parameter decoded, and s3addr_param() finds the first of each name.
 * On failure, the error code and message are set.
 */
#include "fuzz.h"

#include "common/status.h"
#include "proxy/s3addr.h"

static char dom_a[] = "s3.example.com", dom_b[] = "example.com", dom_c[] = "S3.Other.Test.";
static char *domains[] = {dom_a, dom_b, dom_c};
static const char *const methods[] = {"GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "get"};

static int
slice_same(struct slice a, struct slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static int
bucket_ok(struct slice b)
{
    size_t i;

    if (b.len == 0) {
        return 1;
    }
    if (b.len < 3 || b.len > 255) {
        return 0;
    }
    for (i = 0; i < b.len; i++) {
        char c = b.ptr[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');

        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) {
            return 0;
        }
    }
    return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    const char *method = methods[fuzz_byte(&in) % (sizeof(methods) / sizeof(methods[0]))];
    unsigned flags = fuzz_byte(&in) & 1u;
    const char *s = (const char *)in.p, *nl = memchr(s, '\n', in.len);
    struct slice host = nl ? slice_make(s, (size_t)(nl - s)) : SLICE_LIT("");
    struct slice target = nl ? slice_make(nl + 1, in.len - (size_t)(nl + 1 - s)) : slice_make(s, in.len);
    const char *code = NULL, *msg = NULL;
    struct s3_addr a, b;
    struct pool p;
    size_t i, j;
    char *up, *again;

    pool_init(&p);
    if (s3addr_parse(&p, slice_cstr(method), target, host, domains, 3, flags, &a, &code, &msg) !=
        PX_OK) {
        FUZZ_CHECK(code != NULL && msg != NULL);
        pool_deinit(&p);
        return 0;
    }
    FUZZ_CHECK(bucket_ok(a.bucket));
    FUZZ_CHECK(a.key.len <= 1024);
    FUZZ_CHECK(!a.has_key || (a.bucket.len > 0 && a.key.len > 0));
    FUZZ_CHECK(a.has_key || a.key.len == 0);
    FUZZ_CHECK(!a.virtual_host || a.bucket.len > 0);
    FUZZ_CHECK(fuzz_within(a.raw_path.ptr, a.raw_path.len, target.ptr, target.len));
    FUZZ_CHECK(fuzz_within(a.raw_query.ptr, a.raw_query.len, target.ptr, target.len));
    FUZZ_CHECK(a.raw_path.len + (a.raw_query.len ? a.raw_query.len + 1 : 0) <= target.len);
    FUZZ_CHECK(s3_op_name(a.op) != NULL);
    for (i = 0; i < a.nparams; i++) {
        const struct s3_param *first = s3addr_param(&a, a.params[i].name.ptr);

        FUZZ_CHECK(a.params[i].has_value || a.params[i].value.len == 0);
        FUZZ_CHECK(memchr(a.params[i].name.ptr, '\0', a.params[i].name.len) == NULL);
        for (j = 0; j < i && !slice_same(a.params[j].name, a.params[i].name); j++) {
        }
        FUZZ_CHECK(first == &a.params[j]);
    }

    up = s3addr_upstream_path(&p, &a);
    FUZZ_CHECK(up != NULL && up[0] == '/');
    again = a.raw_query.len ? pool_printf(&p, "%s?%.*s", up, SLICE_ARGS(a.raw_query)) : up;
    FUZZ_CHECK(s3addr_parse(&p, slice_cstr(method), slice_cstr(again), SLICE_LIT(""), domains, 3,
                            flags, &b, &code, &msg) == PX_OK);
    FUZZ_CHECK(slice_same(a.bucket, b.bucket) && slice_same(a.key, b.key));
    FUZZ_CHECK(a.has_key == b.has_key && a.op == b.op && a.nparams == b.nparams);
    FUZZ_CHECK(strcmp(s3addr_upstream_path(&p, &b), up) == 0);
    pool_deinit(&p);
    return 0;
}
