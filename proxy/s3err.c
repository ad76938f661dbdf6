/* s3err.c - S3 error table and XML bodies. */
#include "proxy/s3err.h"

#include <string.h>

#define X(name, status, code) status,
static const int err_status[] = {0, S3ERR_CODEC(X)};
#undef X
#define X(name, status, code) code,
static const char *const err_code[] = {"", S3ERR_CODEC(X)};
#undef X

int
s3err_status(enum s3err e)
{
    return e > S3ERR_NONE && e < S3ERR_SENTINEL ? err_status[e] : 500;
}

const char *
s3err_code(enum s3err e)
{
    return e > S3ERR_NONE && e < S3ERR_SENTINEL ? err_code[e] : "InternalError";
}

enum s3err
s3err_from_code(const char *code)
{
    int i;

    for (i = 1; i < S3ERR_SENTINEL; i++) {
        if (strcmp(err_code[i], code) == 0) {
            return (enum s3err)i;
        }
    }
    return S3ERR_INVALID_REQUEST;
}

const char *
s3err_default_message(enum s3err e)
{
    switch (e) {
    case S3ERR_ACCESS_DENIED:
        return "Access Denied";
    case S3ERR_INVALID_ACCESS_KEY:
        return "The AWS Access Key Id you provided does not exist in our records.";
    case S3ERR_SIGNATURE_MISMATCH:
        return "The request signature we calculated does not match the signature you provided. "
               "Check your key and signing method.";
    case S3ERR_TIME_SKEWED:
        return "The difference between the request time and the current time is too large.";
    case S3ERR_SHA256_MISMATCH:
        return "The provided 'x-amz-content-sha256' header does not match what was computed.";
    case S3ERR_BAD_DIGEST:
        return "The checksum you specified did not match the calculated checksum.";
    case S3ERR_INCOMPLETE_BODY:
        return "You did not provide the number of bytes specified by the Content-Length HTTP "
               "header.";
    case S3ERR_MISSING_CONTENT_LENGTH:
        return "You must provide the Content-Length HTTP header.";
    case S3ERR_SERVICE_UNAVAILABLE:
        return "The storage backend is unavailable. Please retry.";
    case S3ERR_SLOW_DOWN:
        return "Please reduce your request rate.";
    case S3ERR_REQUEST_TIMEOUT:
        return "Your socket connection to the server was not read from or written to within "
               "the timeout period.";
    case S3ERR_MALFORMED_XML:
        return "The XML you provided was not well-formed or did not validate against our "
               "published schema.";
    case S3ERR_INTERNAL_ERROR:
        return "We encountered an internal error. Please try again.";
    default:
        return s3err_code(e);
    }
}

char *
s3err_xml_escape(struct pool *p, const char *s, size_t len)
{
    size_t i, n = 0;
    char *out, *o;

    for (i = 0; i < len; i++) {
        switch (s[i]) {
        case '&':
            n += 5;
            break;
        case '<':
        case '>':
            n += 4;
            break;
        case '"':
        case '\'':
            n += 6;
            break;
        default:
            n += 1;
        }
    }
    out = o = pool_alloc(p, n + 1);
    for (i = 0; i < len; i++) {
        const char *rep = NULL;

        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        default:
            *o++ = s[i];
            continue;
        }
        memcpy(o, rep, strlen(rep));
        o += strlen(rep);
    }
    *o = '\0';
    return out;
}

static char *
esc(struct pool *p, const char *s)
{
    return s3err_xml_escape(p, s ? s : "", s ? strlen(s) : 0);
}

char *
s3err_xml_code(struct pool *p, const char *code, const char *message, const char *resource,
               const char *request_id, size_t *len)
{
    char *body = pool_printf(p,
                             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                             "<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource>"
                             "<RequestId>%s</RequestId></Error>",
                             esc(p, code), esc(p, message), esc(p, resource), esc(p, request_id));

    *len = strlen(body);
    return body;
}

char *
s3err_xml(struct pool *p, enum s3err e, const char *message, const char *resource,
          const char *request_id, size_t *len)
{
    return s3err_xml_code(p, s3err_code(e), message ? message : s3err_default_message(e),
                          resource, request_id, len);
}
