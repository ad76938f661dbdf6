/*
 * auth.h - parse what a SigV4 client sent: the Authorization header or the presigned-URL
 * query parameters. Only syntax and self-consistency are checked here; the caller looks up
 * the secret, checks region/service/clock skew/expiry and verifies the signature.
 */
#ifndef S3TEE_AUTH_H
#define S3TEE_AUTH_H

#include <stdint.h>

#include "common/pool.h"
#include "common/slice.h"

struct sigv4_auth {
    struct slice access_key;     /* from Credential=AK/date/region/service/aws4_request */
    struct slice date8;          /* "20130524" */
    struct slice region;         /* "us-east-1" */
    struct slice service;        /* "s3" */
    struct slice scope;          /* "20130524/us-east-1/s3/aws4_request" */
    struct slice signed_headers; /* "host;x-amz-date" */
    struct slice signature;      /* 64 lowercase hex */
    struct slice amz_date;       /* X-Amz-Date header / query value "20130524T000000Z" */
    int presigned;               /* came from the query string */
    int64_t expires;             /* presigned X-Amz-Expires seconds (1..604800), else 0 */
};

/*
 * Error messages (compare by address to tell them apart). Those of auth_parse_header() fit
 * S3's AuthorizationHeaderMalformed; auth_err_algorithm matches what S3 says for a non-SigV4
 * scheme and auth_err_amz_date its AccessDenied for a missing/bad date. Those of
 * auth_parse_presigned() fit AuthorizationQueryParametersError.
 */
extern const char auth_err_algorithm[];       /* not "AWS4-HMAC-SHA256 ..." */
extern const char auth_err_components[];      /* Credential/SignedHeaders/Signature missing, repeated or unknown */
extern const char auth_err_credential[];      /* Credential is not AK/YYYYMMDD/REGION/SERVICE/aws4_request */
extern const char auth_err_signed_headers[];  /* SignedHeaders empty, badly formed or without host */
extern const char auth_err_signature[];       /* Signature is not 64 lowercase hex digits */
extern const char auth_err_amz_date[];        /* X-Amz-Date/Date missing or not YYYYMMDDTHHMMSSZ */
extern const char auth_err_date_mismatch[];   /* credential date != first 8 chars of amz_date */
extern const char auth_err_query_missing[];   /* a presigned parameter is missing or repeated */
extern const char auth_err_query_algorithm[]; /* X-Amz-Algorithm is not AWS4-HMAC-SHA256 */
extern const char auth_err_query_credential[];/* X-Amz-Credential is malformed */
extern const char auth_err_query_date[];      /* X-Amz-Date is not YYYYMMDDTHHMMSSZ */
extern const char auth_err_expires_range[];   /* X-Amz-Expires above 604800 */
extern const char auth_err_expires_number[];  /* X-Amz-Expires not a number, or 0 */
extern const char auth_err_query_escape[];    /* a presigned parameter has a bad %-escape */

/*
 * auth_parse_header - parse "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."
 * (the three parts in any order, spaces after the commas optional). AMZ_DATE is the
 * X-Amz-Date header, or the Date header when X-Amz-Date is absent; it must be in the amz
 * form. Slices in *OUT point into AUTHORIZATION and AMZ_DATE.
 * Returns 0, or -1 with *ERRSTR one of the messages above (also when the credential date is
 * not the first 8 characters of AMZ_DATE).
 */
int auth_parse_header(struct slice authorization, struct slice amz_date, struct sigv4_auth *out,
                      const char **errstr);
/*
 * auth_parse_presigned - parse X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires,
 * X-Amz-SignedHeaders and X-Amz-Signature from the raw QUERY, percent-decoding values into
 * pool P (*OUT's slices point into P). Returns 1 when the query carries neither
 * X-Amz-Algorithm nor X-Amz-Signature (not presigned), 0 when parsed, -1 with *ERRSTR when a
 * parameter is missing or repeated, the algorithm is not AWS4-HMAC-SHA256, X-Amz-Expires is
 * not 1..604800, or a value is malformed.
 */
int auth_parse_presigned(struct pool *p, struct slice query, struct sigv4_auth *out,
                         const char **errstr);
/* 1 if the query has SigV2 presign parameters (AWSAccessKeyId and Signature), else 0. */
int auth_query_is_sigv2(struct slice query);
/*
 * auth_query_param - the raw (still percent-encoded) value of the first parameter named
 * NAME (compared byte for byte after decoding nothing: S3's auth parameter names are plain
 * ASCII). Returns 1 and *VALUE (empty for "name" without '='), or 0 when absent.
 */
int auth_query_param(struct slice query, struct slice name, struct slice *value);

#endif
