/* Unit tests for signing/auth.c: Authorization header and presigned query parsing. */
#include "signing/auth.h"

#include "common/pool.h"
#include "test.h"

#define SIG "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
#define CRED "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
#define SH "SignedHeaders=host;range;x-amz-date"
#define DATE "20130524T000000Z"

static int
slice_is(struct slice s, const char *want)
{
    return slice_eq(s, slice_cstr(want));
}

/* Parses AUTHZ with DATE; returns the errstr (NULL on success). */
static const char *
hdr(const char *authz, const char *date, struct sigv4_auth *a)
{
    const char *err = NULL;
    int rc = auth_parse_header(slice_cstr(authz), slice_cstr(date), a, &err);

    if (rc == 0) {
        return NULL;
    }
    return err ? err : "(no errstr)";
}

static const char *
pre(struct pool *p, const char *query, struct sigv4_auth *a, int *rc)
{
    const char *err = NULL;

    *rc = auth_parse_presigned(p, slice_cstr(query), a, &err);
    return err;
}

#define PQ_ALGO "X-Amz-Algorithm=AWS4-HMAC-SHA256"
#define PQ_CRED "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
#define PQ_DATE "X-Amz-Date=20130524T000000Z"
#define PQ_SH "X-Amz-SignedHeaders=host"
#define PQ_SIG "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"

int
main(void)
{
    struct sigv4_auth a;
    struct pool p;
    const char *err;
    int rc;

    /* the AWS documentation's example header (line breaks removed) */
    err = hdr("AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=" SIG, DATE, &a);
    ok(err == NULL, "AWS doc example parses");
    ok(slice_is(a.access_key, "AKIAIOSFODNN7EXAMPLE") && slice_is(a.date8, "20130524") &&
           slice_is(a.region, "us-east-1") && slice_is(a.service, "s3"),
       "credential parts");
    ok(slice_is(a.scope, "20130524/us-east-1/s3/aws4_request"), "scope");
    ok(slice_is(a.signed_headers, "host;range;x-amz-date"), "signed headers");
    ok(slice_is(a.signature, SIG), "signature");
    ok(slice_is(a.amz_date, DATE) && a.presigned == 0 && a.expires == 0, "date, not presigned");

    ok(hdr("AWS4-HMAC-SHA256 " CRED "," SH ",Signature=" SIG, DATE, &a) == NULL,
       "no spaces after commas");
    ok(hdr("AWS4-HMAC-SHA256 Signature=" SIG ", " CRED ", " SH, DATE, &a) == NULL &&
           slice_is(a.region, "us-east-1") && slice_is(a.signature, SIG),
       "parts in another order");
    ok(hdr("AWS4-HMAC-SHA256   " SH " ,\t" CRED " , Signature=" SIG "  ", DATE, &a) == NULL &&
           slice_is(a.signed_headers, "host;range;x-amz-date") && slice_is(a.signature, SIG),
       "extra spaces and tabs around parts");

    ok(hdr("AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g=", DATE, &a) ==
           auth_err_algorithm,
       "SigV2 header -> algorithm error");
    ok(hdr("AWS4-HMAC-SHA512 " CRED ", " SH ", Signature=" SIG, DATE, &a) == auth_err_algorithm,
       "other algorithm");
    ok(hdr("AWS4-HMAC-SHA256", DATE, &a) == auth_err_algorithm, "algorithm alone");
    ok(hdr("AWS4-HMAC-SHA256," CRED ", " SH ", Signature=" SIG, DATE, &a) == auth_err_algorithm,
       "no space after the algorithm");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH, DATE, &a) == auth_err_components, "no Signature");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", Signature=" SIG, DATE, &a) == auth_err_components,
       "no SignedHeaders");
    ok(hdr("AWS4-HMAC-SHA256 " SH ", Signature=" SIG, DATE, &a) == auth_err_components,
       "no Credential");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=" SIG ", Signature=" SIG, DATE, &a) ==
           auth_err_components,
       "repeated part");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=" SIG ", Extra=1", DATE, &a) ==
           auth_err_components,
       "unknown part");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=" SIG ",", DATE, &a) ==
           auth_err_components,
       "trailing comma");
    ok(hdr("AWS4-HMAC-SHA256 " CRED " " SH " Signature=" SIG, DATE, &a) != NULL,
       "parts without commas");
    ok(hdr("AWS4-HMAC-SHA256 credential=AKID/20130524/us-east-1/s3/aws4_request, " SH
           ", Signature=" SIG, DATE, &a) == auth_err_components,
       "part names are case-sensitive");

    ok(hdr("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3, " SH
           ", Signature=" SIG, DATE, &a) == auth_err_credential,
       "credential with four parts");
    ok(hdr("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_request/x, " SH
           ", Signature=" SIG, DATE, &a) == auth_err_credential,
       "credential with six parts");
    ok(hdr("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1/s3/aws4_requesT, " SH
           ", Signature=" SIG, DATE, &a) == auth_err_credential,
       "wrong terminator");
    ok(hdr("AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request, " SH
           ", Signature=" SIG, DATE, &a) == auth_err_credential,
       "empty access key");
    ok(hdr("AWS4-HMAC-SHA256 Credential=AKID/2013052/us-east-1/s3/aws4_request, " SH
           ", Signature=" SIG, DATE, &a) == auth_err_credential,
       "seven-digit date");
    ok(hdr("AWS4-HMAC-SHA256 Credential=AKID/2013O524/us-east-1/s3/aws4_request, " SH
           ", Signature=" SIG, DATE, &a) == auth_err_credential,
       "letter in the date");
    ok(hdr("AWS4-HMAC-SHA256 Credential=AKID/20130524//s3/aws4_request, " SH ", Signature=" SIG,
           DATE, &a) == auth_err_credential,
       "empty region");
    ok(hdr("AWS4-HMAC-SHA256 Credential=AKID/20130524/us-east-1//aws4_request, " SH
           ", Signature=" SIG, DATE, &a) == auth_err_credential,
       "empty service");
    ok(strstr(auth_err_credential, "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request") != NULL,
       "credential message names the expected form");

    ok(hdr("AWS4-HMAC-SHA256 " CRED ", SignedHeaders=, Signature=" SIG, DATE, &a) ==
           auth_err_signed_headers,
       "empty SignedHeaders");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host;;x-amz-date, Signature=" SIG, DATE,
           &a) == auth_err_signed_headers,
       "empty name inside SignedHeaders");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", SignedHeaders=Host;x-amz-date, Signature=" SIG, DATE,
           &a) == auth_err_signed_headers,
       "uppercase SignedHeaders");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", SignedHeaders=range;x-amz-date, Signature=" SIG, DATE,
           &a) == auth_err_signed_headers,
       "host not signed");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host;, Signature=" SIG, DATE, &a) ==
           auth_err_signed_headers,
       "trailing semicolon");

    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=" SIG "0", DATE, &a) ==
           auth_err_signature,
       "65-digit signature");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=", DATE, &a) == auth_err_signature,
       "empty signature");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH
           ", Signature=FE5F80F77D5FA3BECA038A248FF027D0445342FE2855DDC963176630326F1024",
           DATE, &a) == auth_err_signature,
       "uppercase signature");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH
           ", Signature=ge5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024",
           DATE, &a) == auth_err_signature,
       "non-hex signature");

    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=" SIG, "", &a) == auth_err_amz_date,
       "no date");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=" SIG, "Fri, 24 May 2013 00:00:00 GMT",
           &a) == auth_err_amz_date,
       "RFC 1123 Date header is not the amz form");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=" SIG, "20130524T000000", &a) ==
           auth_err_amz_date,
       "amz date without Z");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=" SIG, "20130525T000000Z", &a) ==
           auth_err_date_mismatch,
       "credential date differs from X-Amz-Date");
    ok(hdr("AWS4-HMAC-SHA256 " CRED ", " SH ", Signature=" SIG, "20130524T235959Z", &a) == NULL,
       "any time on the credential's day");

    pool_init(&p);
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=86400&" PQ_SH "&" PQ_SIG, &a,
              &rc);
    ok(rc == 0 && err == NULL, "AWS doc presigned example parses");
    ok(a.presigned == 1 && a.expires == 86400, "presigned, expires");
    ok(slice_is(a.access_key, "AKIAIOSFODNN7EXAMPLE") &&
           slice_is(a.scope, "20130524/us-east-1/s3/aws4_request"),
       "credential percent-decoded");
    ok(slice_is(a.signed_headers, "host") && slice_is(a.amz_date, DATE) &&
           slice_is(a.signature,
                    "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"),
       "other fields");
    err = pre(&p, "versionId=3&" PQ_SIG "&" PQ_SH "&X-Amz-Expires=1&" PQ_DATE "&" PQ_CRED
                  "&" PQ_ALGO "&x=y",
              &a, &rc);
    ok(rc == 0 && a.expires == 1, "any order, other params, expires 1");
    pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=604800&" PQ_SH "&" PQ_SIG, &a, &rc);
    ok(rc == 0 && a.expires == 604800, "expires 604800 (one week) accepted");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=604801&" PQ_SH "&" PQ_SIG, &a,
              &rc);
    ok(rc == -1 && err == auth_err_expires_range, "expires 604801 refused");
    ok(strcmp(auth_err_expires_range, "X-Amz-Expires must be less than a week (in seconds) that "
                                      "is; the maximum expires is 604800 seconds") == 0,
       "S3's wording for the week limit");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=0&" PQ_SH "&" PQ_SIG, &a, &rc);
    ok(rc == -1 && err == auth_err_expires_number, "expires 0 refused");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=-5&" PQ_SH "&" PQ_SIG, &a, &rc);
    ok(rc == -1 && err == auth_err_expires_number, "negative expires refused");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=1h&" PQ_SH "&" PQ_SIG, &a, &rc);
    ok(rc == -1 && err == auth_err_expires_number, "non-numeric expires refused");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=99999999999999999999999&" PQ_SH
                  "&" PQ_SIG,
              &a, &rc);
    ok(rc == -1 && err != NULL, "overflowing expires refused");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&" PQ_SH "&" PQ_SIG, &a, &rc);
    ok(rc == -1 && err == auth_err_query_missing, "missing X-Amz-Expires");
    err = pre(&p, PQ_CRED "&" PQ_DATE "&X-Amz-Expires=1&" PQ_SH "&" PQ_SIG, &a, &rc);
    ok(rc == -1 && err == auth_err_query_missing, "missing X-Amz-Algorithm (signature present)");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=1&" PQ_SH, &a, &rc);
    ok(rc == -1 && err == auth_err_query_missing, "missing X-Amz-Signature (algorithm present)");
    err = pre(&p, PQ_ALGO "&" PQ_DATE "&X-Amz-Expires=1&" PQ_SH "&" PQ_SIG, &a, &rc);
    ok(rc == -1 && err == auth_err_query_missing, "missing X-Amz-Credential");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&X-Amz-Expires=1&" PQ_SH "&" PQ_SIG, &a, &rc);
    ok(rc == -1 && err == auth_err_query_missing, "missing X-Amz-Date");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=1&" PQ_SIG, &a, &rc);
    ok(rc == -1 && err == auth_err_query_missing, "missing X-Amz-SignedHeaders");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=1&" PQ_SH "&" PQ_SIG "&" PQ_SIG,
              &a, &rc);
    ok(rc == -1 && err == auth_err_query_missing, "repeated X-Amz-Signature");
    err = pre(&p, "X-Amz-Algorithm=AWS4-HMAC-SHA1&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=1&" PQ_SH
                  "&" PQ_SIG,
              &a, &rc);
    ok(rc == -1 && err == auth_err_query_algorithm, "wrong algorithm");
    err = pre(&p, PQ_ALGO "&X-Amz-Credential=AKID%2F20130524%2Fus-east-1%2Fs3&" PQ_DATE
                  "&X-Amz-Expires=1&" PQ_SH "&" PQ_SIG,
              &a, &rc);
    ok(rc == -1 && err == auth_err_query_credential, "short credential");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&X-Amz-Date=2013-05-24T00:00:00Z&X-Amz-Expires=1&" PQ_SH
                  "&" PQ_SIG,
              &a, &rc);
    ok(rc == -1 && err == auth_err_query_date, "ISO extended date refused");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&X-Amz-Date=20130523T235959Z&X-Amz-Expires=1&" PQ_SH "&" PQ_SIG,
              &a, &rc);
    ok(rc == -1 && err == auth_err_date_mismatch, "credential date differs from X-Amz-Date");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=1&X-Amz-SignedHeaders=x-amz-acl&"
                  PQ_SIG,
              &a, &rc);
    ok(rc == -1 && err == auth_err_signed_headers, "host not signed");
    err = pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=1&" PQ_SH
                  "&X-Amz-Signature=abc",
              &a, &rc);
    ok(rc == -1 && err == auth_err_signature, "short signature");
    err = pre(&p, PQ_ALGO "&X-Amz-Credential=AKID%2G20130524&" PQ_DATE "&X-Amz-Expires=1&" PQ_SH
                  "&" PQ_SIG,
              &a, &rc);
    ok(rc == -1 && err == auth_err_query_escape, "bad escape in a value");
    pre(&p, PQ_ALGO "&" PQ_CRED "&" PQ_DATE "&X-Amz-Expires=1&X-Amz-SignedHeaders=host%3Bx-amz-acl&"
            PQ_SIG,
        &a, &rc);
    ok(rc == 0 && slice_is(a.signed_headers, "host;x-amz-acl"), "encoded ';' in SignedHeaders");

    pre(&p, "", &a, &rc);
    ok(rc == 1, "empty query: not presigned");
    pre(&p, "versionId=3&prefix=a%2Fb&acl", &a, &rc);
    ok(rc == 1, "ordinary query: not presigned");
    pre(&p, "X-Amz-Date=" DATE "&X-Amz-Expires=5", &a, &rc);
    ok(rc == 1, "stray X-Amz-Date without algorithm/signature: not presigned");
    pre(&p, "x-amz-algorithm=AWS4-HMAC-SHA256&x-amz-signature=" SIG, &a, &rc);
    ok(rc == 1, "parameter names are case-sensitive");

    ok(auth_query_is_sigv2(slice_cstr("AWSAccessKeyId=AKID&Expires=1141889120&Signature=vjb%2B")),
       "SigV2 presigned query");
    ok(auth_query_is_sigv2(slice_cstr("Signature=x&foo&AWSAccessKeyId=AKID")), "any order");
    ok(!auth_query_is_sigv2(slice_cstr("AWSAccessKeyId=AKID&Expires=1")), "no Signature");
    ok(!auth_query_is_sigv2(slice_cstr(PQ_ALGO "&" PQ_SIG)), "SigV4 is not SigV2");
    ok(!auth_query_is_sigv2(slice_cstr("")), "empty");
    pool_deinit(&p);
    return done_testing();
}
