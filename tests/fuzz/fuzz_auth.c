/*
 * fuzz_auth.c - signing/auth.c: the SigV4 Authorization header and presigned query.
 *
 * First byte: header (even) or presigned query (odd).
 *   header     "AUTHORIZATION\nAMZ_DATE" (no newline: date "20130524T000000Z")
 *   presigned  the bytes are the raw query
 * Checks on a successful parse: the slices lie inside the input (the header) or are
 * NUL-free decoded copies (presigned); the signature is 64 lowercase hex; the scope is
 * date8/region/service/aws4_request with date8 the first 8 characters of the amz date;
 * signed headers include host; X-Amz-Expires is 1..604800. Then the canonical form we
 * would write (one header, or one query) parses to the same fields. A failure names one of
 * the documented messages.
 */
#include "fuzz.h"

#include "signing/auth.h"
#include "signing/uri.h"

static const char *const header_errs[] = {
    auth_err_algorithm, auth_err_components, auth_err_credential,    auth_err_signed_headers,
    auth_err_signature, auth_err_amz_date,   auth_err_date_mismatch,
};
static const char *const query_errs[] = {
    auth_err_query_missing,  auth_err_query_algorithm, auth_err_query_credential,
    auth_err_query_date,     auth_err_expires_range,   auth_err_expires_number,
    auth_err_query_escape,   auth_err_date_mismatch,   auth_err_signed_headers,
    auth_err_signature,      auth_err_credential,      auth_err_amz_date,
};

static int
slice_same(struct slice a, struct slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* The slices of PARTS (ended by SLICE_NULL) concatenated in P; NUL bytes kept. */
static struct slice
join(struct pool *p, const struct slice *parts)
{
    size_t n = 0, i;
    char *out;

    for (i = 0; parts[i].ptr != NULL; i++) {
        n += parts[i].len;
    }
    out = pool_alloc(p, n + 1);
    n = 0;
    for (i = 0; parts[i].ptr != NULL; i++) {
        if (parts[i].len) {
            memcpy(out + n, parts[i].ptr, parts[i].len);
        }
        n += parts[i].len;
    }
    return slice_make(out, n);
}

static int
one_of(const char *e, const char *const *list, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (e == list[i]) {
            return 1;
        }
    }
    return 0;
}

static void
check_auth(const struct sigv4_auth *a)
{
    size_t i, n;
    char *scope;
    int has_host = 0;
    struct slice sh = a->signed_headers;

    FUZZ_CHECK(a->signature.len == 64);
    for (i = 0; i < 64; i++) {
        char c = a->signature.ptr[i];

        FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    }
    FUZZ_CHECK(a->amz_date.len == 16 && a->date8.len == 8);
    FUZZ_CHECK(memcmp(a->amz_date.ptr, a->date8.ptr, 8) == 0);
    FUZZ_CHECK(a->access_key.len > 0 && a->region.len > 0 && a->service.len > 0);
    scope = malloc(a->scope.len + 16);
    FUZZ_CHECK(scope != NULL);
    /* by hand, not snprintf: the parts may hold NUL bytes */
    FUZZ_CHECK(a->scope.len == a->date8.len + a->region.len + a->service.len + 15);
    n = 0;
    memcpy(scope + n, a->date8.ptr, a->date8.len);
    n += a->date8.len;
    scope[n++] = '/';
    memcpy(scope + n, a->region.ptr, a->region.len);
    n += a->region.len;
    scope[n++] = '/';
    memcpy(scope + n, a->service.ptr, a->service.len);
    n += a->service.len;
    memcpy(scope + n, "/aws4_request", 13);
    FUZZ_CHECK(memcmp(scope, a->scope.ptr, a->scope.len) == 0);
    while (sh.len > 0) {
        long semi = slice_index(sh, ';');
        struct slice name = semi < 0 ? sh : slice_make(sh.ptr, (size_t)semi);

        FUZZ_CHECK(name.len > 0);
        has_host |= slice_eq(name, SLICE_LIT("host"));
        if (semi < 0) {
            break;
        }
        sh = slice_make(sh.ptr + semi + 1, sh.len - (size_t)semi - 1);
    }
    FUZZ_CHECK(has_host);
    free(scope);
    FUZZ_CHECK(a->presigned ? a->expires >= 1 && a->expires <= 604800 : a->expires == 0);
}

static void
same_auth(const struct sigv4_auth *a, const struct sigv4_auth *b)
{
    FUZZ_CHECK(slice_same(a->access_key, b->access_key) && slice_same(a->date8, b->date8));
    FUZZ_CHECK(slice_same(a->region, b->region) && slice_same(a->service, b->service));
    FUZZ_CHECK(slice_same(a->scope, b->scope) && slice_same(a->signature, b->signature));
    FUZZ_CHECK(slice_same(a->signed_headers, b->signed_headers));
    FUZZ_CHECK(slice_same(a->amz_date, b->amz_date) && a->expires == b->expires);
    FUZZ_CHECK(a->presigned == b->presigned);
}

static void
fuzz_header(const char *s, size_t len)
{
    const char *nl = memchr(s, '\n', len);
    struct slice hdr = nl ? slice_make(s, (size_t)(nl - s)) : slice_make(s, len);
    struct slice date = nl ? slice_make(nl + 1, len - (size_t)(nl + 1 - s)) : SLICE_LIT("20130524T000000Z");
    struct sigv4_auth a, b;
    const char *err = NULL;
    struct pool p;
    struct slice canon;

    if (auth_parse_header(hdr, date, &a, &err) != 0) {
        FUZZ_CHECK(one_of(err, header_errs, sizeof(header_errs) / sizeof(header_errs[0])));
        return;
    }
    FUZZ_CHECK(!a.presigned);
    check_auth(&a);
    FUZZ_CHECK(fuzz_within(a.access_key.ptr, a.access_key.len, hdr.ptr, hdr.len));
    FUZZ_CHECK(fuzz_within(a.scope.ptr, a.scope.len, hdr.ptr, hdr.len));
    FUZZ_CHECK(fuzz_within(a.signed_headers.ptr, a.signed_headers.len, hdr.ptr, hdr.len));
    FUZZ_CHECK(fuzz_within(a.signature.ptr, a.signature.len, hdr.ptr, hdr.len));
    FUZZ_CHECK(fuzz_within(a.amz_date.ptr, a.amz_date.len, date.ptr, date.len));

    pool_init(&p);
    canon = join(&p, (struct slice[]){SLICE_LIT("AWS4-HMAC-SHA256 Credential="), a.access_key,
                                      SLICE_LIT("/"), a.scope, SLICE_LIT(", SignedHeaders="),
                                      a.signed_headers, SLICE_LIT(", Signature="), a.signature,
                                      SLICE_NULL});
    FUZZ_CHECK(auth_parse_header(canon, a.amz_date, &b, &err) == 0);
    same_auth(&a, &b);
    pool_deinit(&p);
}

static void
fuzz_presigned(const char *s, size_t len)
{
    struct slice q = slice_make(s, len);
    struct sigv4_auth a, b;
    const char *err = NULL;
    struct pool p;
    struct slice cred, canon;
    char expires[32];
    int rc;

    pool_init(&p);
    auth_query_is_sigv2(q);
    rc = auth_parse_presigned(&p, q, &a, &err);
    if (rc != 0) {
        FUZZ_CHECK(rc == 1 || one_of(err, query_errs, sizeof(query_errs) / sizeof(query_errs[0])));
        pool_deinit(&p);
        return;
    }
    FUZZ_CHECK(a.presigned);
    check_auth(&a);
    FUZZ_CHECK(memchr(a.access_key.ptr, '\0', a.access_key.len) == NULL);

    cred = join(&p, (struct slice[]){a.access_key, SLICE_LIT("/"), a.scope, SLICE_NULL});
    snprintf(expires, sizeof(expires), "%lld", (long long)a.expires);
    canon = join(&p, (struct slice[]){SLICE_LIT("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="),
                                      slice_cstr(uri_encode_pool(&p, cred, 0)),
                                      SLICE_LIT("&X-Amz-Date="), a.amz_date,
                                      SLICE_LIT("&X-Amz-Expires="), slice_cstr(expires),
                                      SLICE_LIT("&X-Amz-SignedHeaders="),
                                      slice_cstr(uri_encode_pool(&p, a.signed_headers, 0)),
                                      SLICE_LIT("&X-Amz-Signature="), a.signature, SLICE_NULL});
    FUZZ_CHECK(auth_parse_presigned(&p, canon, &b, &err) == 0);
    same_auth(&a, &b);
    pool_deinit(&p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};

    if (fuzz_byte(&in) & 1) {
        fuzz_presigned((const char *)in.p, in.len);
    } else {
        fuzz_header((const char *)in.p, in.len);
    }
    return 0;
}
