/* auth.c - parse SigV4 credentials from the Authorization header or a presigned query string. */
#include "auth.h"

#include "common/timeutil.h"
#include "uri.h"

#define CRED_EXPECT "\"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\"."

const char auth_err_algorithm[] =
    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.";
const char auth_err_components[] =
    "The authorization header is malformed; the authorization header requires three components: "
    "Credential, SignedHeaders, and Signature.";
const char auth_err_credential[] =
    "The authorization header is malformed; the Credential is mal-formed; expecting " CRED_EXPECT;
const char auth_err_signed_headers[] =
    "The authorization header is malformed; SignedHeaders must be a non-empty list of "
    "lowercase header names separated by ';' and must include host.";
const char auth_err_signature[] =
    "The authorization header is malformed; the Signature must be 64 lowercase hexadecimal "
    "characters.";
const char auth_err_amz_date[] = "AWS authentication requires a valid Date or x-amz-date header";
const char auth_err_date_mismatch[] =
    "Invalid credential date. Date is not the same as X-Amz-Date.";
const char auth_err_query_missing[] =
    "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
    "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.";
const char auth_err_query_algorithm[] = "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"";
const char auth_err_query_credential[] =
    "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; expecting "
    CRED_EXPECT;
const char auth_err_query_date[] =
    "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"";
const char auth_err_expires_range[] = "X-Amz-Expires must be less than a week (in seconds) that "
                                      "is; the maximum expires is 604800 seconds";
const char auth_err_expires_number[] =
    "X-Amz-Expires must be a whole number of seconds from 1 to 604800";
const char auth_err_query_escape[] =
    "Query-string authentication parameters contain a malformed percent-escape.";

#define AUTH_MAX_EXPIRES 604800 /* seven days: S3's limit for presigned URLs */

/* Splits S at the first C: *HEAD before it, S after it. Returns 0 when C is absent. */
static int
split_at(struct slice *s, char c, struct slice *head)
{
    long i = slice_index(*s, c);

    if (i < 0) {
        return 0;
    }
    *head = slice_make(s->ptr, (size_t)i);
    s->ptr += i + 1;
    s->len -= (size_t)i + 1;
    return 1;
}

static int
all_digits(struct slice s)
{
    size_t i;

    for (i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9') {
            return 0;
        }
    }
    return 1;
}

/* "AK/YYYYMMDD/REGION/SERVICE/aws4_request" -> access_key, date8, region, service, scope. */
static int
parse_credential(struct slice cred, struct sigv4_auth *out)
{
    struct slice rest = cred;

    if (!split_at(&rest, '/', &out->access_key) || out->access_key.len == 0) {
        return -1;
    }
    out->scope = rest;
    if (!split_at(&rest, '/', &out->date8) || out->date8.len != 8 || !all_digits(out->date8)) {
        return -1;
    }
    if (!split_at(&rest, '/', &out->region) || out->region.len == 0) {
        return -1;
    }
    if (!split_at(&rest, '/', &out->service) || out->service.len == 0) {
        return -1;
    }
    return slice_eq(rest, SLICE_LIT("aws4_request")) ? 0 : -1;
}

/* Lowercase token characters separated by single ';', and host among them. */
static int
valid_signed_headers(struct slice sh)
{
    struct slice rest = sh, name;
    int has_host = 0, more = 1;

    if (sh.len == 0) {
        return 0;
    }
    while (more) {
        size_t i;

        if (!split_at(&rest, ';', &name)) {
            name = rest;
            more = 0;
        }
        if (name.len == 0) {
            return 0;
        }
        for (i = 0; i < name.len; i++) {
            char c = name.ptr[i];

            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  c == '.')) {
                return 0;
            }
        }
        has_host |= slice_eq(name, SLICE_LIT("host"));
    }
    return has_host;
}

static int
valid_signature(struct slice sig)
{
    size_t i;

    if (sig.len != 64) {
        return 0;
    }
    for (i = 0; i < sig.len; i++) {
        char c = sig.ptr[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

/* The amz date must parse and start with the credential's date. */
static const char *
check_dates(const struct sigv4_auth *a, const char *bad_format)
{
    time_t t;

    if (timeutil_parse_amz_date(a->amz_date, &t) != 0) {
        return bad_format;
    }
    if (!slice_eq(a->date8, slice_make(a->amz_date.ptr, 8))) {
        return auth_err_date_mismatch;
    }
    return NULL;
}

int
auth_parse_header(struct slice authorization, struct slice amz_date, struct sigv4_auth *out,
                  const char **errstr)
{
    static const struct slice algo = SLICE_LIT("AWS4-HMAC-SHA256");
    struct slice rest, cred = SLICE_NULL, piece;
    int seen_cred = 0, seen_sh = 0, seen_sig = 0, more = 1;

    memset(out, 0, sizeof(*out));
    if (!slice_starts_with(authorization, algo) || authorization.len == algo.len ||
        (authorization.ptr[algo.len] != ' ' && authorization.ptr[algo.len] != '\t')) {
        *errstr = auth_err_algorithm;
        return -1;
    }
    rest = slice_trim(slice_make(authorization.ptr + algo.len, authorization.len - algo.len));
    while (more) {
        struct slice key;

        if (!split_at(&rest, ',', &piece)) {
            piece = rest;
            more = 0;
        }
        piece = slice_trim(piece);
        if (!split_at(&piece, '=', &key)) {
            *errstr = auth_err_components;
            return -1;
        }
        if (slice_eq(key, SLICE_LIT("Credential")) && !seen_cred++) {
            cred = piece;
        } else if (slice_eq(key, SLICE_LIT("SignedHeaders")) && !seen_sh++) {
            out->signed_headers = piece;
        } else if (slice_eq(key, SLICE_LIT("Signature")) && !seen_sig++) {
            out->signature = piece;
        } else {
            *errstr = auth_err_components; /* unknown or repeated part */
            return -1;
        }
    }
    if (!seen_cred || !seen_sh || !seen_sig) {
        *errstr = auth_err_components;
        return -1;
    }
    if (parse_credential(cred, out) != 0) {
        *errstr = auth_err_credential;
        return -1;
    }
    if (!valid_signed_headers(out->signed_headers)) {
        *errstr = auth_err_signed_headers;
        return -1;
    }
    if (!valid_signature(out->signature)) {
        *errstr = auth_err_signature;
        return -1;
    }
    out->amz_date = amz_date;
    if ((*errstr = check_dates(out, auth_err_amz_date)) != NULL) {
        return -1;
    }
    return 0;
}

enum { Q_ALGORITHM, Q_CREDENTIAL, Q_DATE, Q_EXPIRES, Q_SIGNED_HEADERS, Q_SIGNATURE, Q_COUNT };

int
auth_parse_presigned(struct pool *p, struct slice query, struct sigv4_auth *out,
                     const char **errstr)
{
    static const struct slice names[Q_COUNT] = {
        SLICE_LIT("X-Amz-Algorithm"),     SLICE_LIT("X-Amz-Credential"),
        SLICE_LIT("X-Amz-Date"),          SLICE_LIT("X-Amz-Expires"),
        SLICE_LIT("X-Amz-SignedHeaders"), SLICE_LIT("X-Amz-Signature"),
    };
    struct slice val[Q_COUNT], rest = query, piece;
    int seen[Q_COUNT] = {0}, more = query.len > 0, repeated = 0, i;
    uint64_t expires;

    memset(out, 0, sizeof(*out));
    while (more) {
        struct slice rawname, name;

        if (!split_at(&rest, '&', &piece)) {
            piece = rest;
            more = 0;
        }
        rawname = piece;
        if (split_at(&piece, '=', &rawname) == 0) {
            piece = slice_make("", 0);
        }
        if (uri_decode_pool(p, rawname, 0, &name) != 0) {
            continue; /* not one of ours; sigv4_canonical_query() reports bad escapes */
        }
        for (i = 0; i < Q_COUNT; i++) {
            if (!slice_eq(name, names[i])) {
                continue;
            }
            if (seen[i]++) {
                repeated = 1;
            } else if (uri_decode_pool(p, piece, 0, &val[i]) != 0) {
                *errstr = auth_err_query_escape;
                return -1;
            }
        }
    }
    if (!seen[Q_ALGORITHM] && !seen[Q_SIGNATURE]) {
        return 1;
    }
    for (i = 0; i < Q_COUNT; i++) {
        if (!seen[i]) {
            repeated = 1;
        }
    }
    if (repeated) {
        *errstr = auth_err_query_missing;
        return -1;
    }
    if (!slice_eq(val[Q_ALGORITHM], SLICE_LIT("AWS4-HMAC-SHA256"))) {
        *errstr = auth_err_query_algorithm;
        return -1;
    }
    if (parse_credential(val[Q_CREDENTIAL], out) != 0) {
        *errstr = auth_err_query_credential;
        return -1;
    }
    out->amz_date = val[Q_DATE];
    if ((*errstr = check_dates(out, auth_err_query_date)) != NULL) {
        return -1;
    }
    if (slice_to_u64(val[Q_EXPIRES], &expires) != 0 || expires == 0) {
        *errstr = auth_err_expires_number;
        return -1;
    }
    if (expires > AUTH_MAX_EXPIRES) {
        *errstr = auth_err_expires_range;
        return -1;
    }
    out->expires = (int64_t)expires;
    out->signed_headers = val[Q_SIGNED_HEADERS];
    if (!valid_signed_headers(out->signed_headers)) {
        *errstr = auth_err_signed_headers;
        return -1;
    }
    out->signature = val[Q_SIGNATURE];
    if (!valid_signature(out->signature)) {
        *errstr = auth_err_signature;
        return -1;
    }
    out->presigned = 1;
    *errstr = NULL;
    return 0;
}

int
auth_query_param(struct slice query, struct slice name, struct slice *value)
{
    struct slice rest = query, piece;
    int more = query.len > 0;

    while (more) {
        struct slice key;

        if (!split_at(&rest, '&', &piece)) {
            piece = rest;
            more = 0;
        }
        key = piece;
        if (!split_at(&piece, '=', &key)) {
            piece = slice_make(piece.ptr + piece.len, 0);
        }
        if (slice_eq(key, name)) {
            *value = piece;
            return 1;
        }
    }
    return 0;
}

int
auth_query_is_sigv2(struct slice query)
{
    struct slice v;

    return auth_query_param(query, SLICE_LIT("AWSAccessKeyId"), &v) &&
           auth_query_param(query, SLICE_LIT("Signature"), &v);
}
