/* s3err.h - every client-visible error: one X-macro table of HTTP status and S3 <Code>. */
#ifndef S3TEE_PROXY_S3ERR_H
#define S3TEE_PROXY_S3ERR_H

#include <stddef.h>

#include "common/pool.h"

#define S3ERR_CODEC(X)                                                                             \
    X(ACCESS_DENIED, 403, "AccessDenied")                                                          \
    X(INVALID_ACCESS_KEY, 403, "InvalidAccessKeyId")                                               \
    X(SIGNATURE_MISMATCH, 403, "SignatureDoesNotMatch")                                            \
    X(TIME_SKEWED, 403, "RequestTimeTooSkewed")                                                    \
    X(AUTH_HEADER_MALFORMED, 400, "AuthorizationHeaderMalformed")                                  \
    X(AUTH_QUERY_MALFORMED, 400, "AuthorizationQueryParametersError")                              \
    X(SHA256_MISMATCH, 400, "XAmzContentSHA256Mismatch")                                           \
    X(BAD_DIGEST, 400, "BadDigest")                                                                \
    X(INCOMPLETE_BODY, 400, "IncompleteBody")                                                      \
    X(INVALID_ARGUMENT, 400, "InvalidArgument")                                                    \
    X(INVALID_REQUEST, 400, "InvalidRequest")                                                      \
    X(INVALID_URI, 400, "InvalidURI")                                                              \
    X(INVALID_BUCKET_NAME, 400, "InvalidBucketName")                                               \
    X(KEY_TOO_LONG, 400, "KeyTooLongError")                                                        \
    X(HEADERS_TOO_LARGE, 400, "RequestHeaderSectionTooLarge")                                      \
    X(MISSING_CONTENT_LENGTH, 411, "MissingContentLength")                                         \
    X(ENTITY_TOO_LARGE, 400, "EntityTooLarge")                                                     \
    X(MALFORMED_XML, 400, "MalformedXML")                                                          \
    X(URI_TOO_LONG, 414, "RequestURITooLong")                                                      \
    X(METHOD_NOT_ALLOWED, 405, "MethodNotAllowed")                                                 \
    X(OPERATION_ABORTED, 409, "OperationAborted")                                                  \
    X(BUCKET_NOT_EMPTY, 409, "BucketNotEmpty")                                                     \
    X(NOT_IMPLEMENTED, 501, "NotImplemented")                                                      \
    X(VERSION_NOT_SUPPORTED, 505, "HttpVersionNotSupported")                                       \
    X(REQUEST_TIMEOUT, 400, "RequestTimeout")                                                      \
    X(INTERNAL_ERROR, 500, "InternalError")                                                        \
    X(SERVICE_UNAVAILABLE, 503, "ServiceUnavailable")                                              \
    X(SLOW_DOWN, 503, "SlowDown")

#define X(name, status, code) S3ERR_##name,
enum s3err { S3ERR_NONE = 0, S3ERR_CODEC(X) S3ERR_SENTINEL };
#undef X

int s3err_status(enum s3err e);
const char *s3err_code(enum s3err e);
/* Looks a code up by its S3 name ("InvalidURI"); S3ERR_INVALID_REQUEST when unknown. */
enum s3err s3err_from_code(const char *code);
/* Default human message for E. */
const char *s3err_default_message(enum s3err e);
/*
 * s3err_xml - the XML error body AWS sends, in pool P:
 * <Error><Code/><Message/><Resource/><RequestId/></Error>. MESSAGE NULL = default; every
 * field is XML-escaped. Returns the body; *LEN its length.
 */
char *s3err_xml(struct pool *p, enum s3err e, const char *message, const char *resource,
                const char *request_id, size_t *len);
/* Same with a raw status/code pair (for codes outside the table, e.g. from the parser). */
char *s3err_xml_code(struct pool *p, const char *code, const char *message, const char *resource,
                     const char *request_id, size_t *len);
/* XML-escapes S (len bytes) into pool P. */
char *s3err_xml_escape(struct pool *p, const char *s, size_t len);

#endif
