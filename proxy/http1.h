/*
 * http1.h - sans-I/O HTTP/1.1 request-head parser and chunked body decoder.
 *
 * The connection code (proxy/h1.c) accumulates bytes and asks http1_head_length() whether a
 * whole head has arrived; then http1_parse_head() turns it into a struct http1_request whose
 * slices point into that buffer. Bodies are never buffered here: Content-Length bodies are
 * counted by the caller, chunked bodies go through struct http1_chunked piece by piece.
 *
 * The parser is strict on purpose: anything two HTTP implementations could read differently
 * (request smuggling) is refused rather than repaired. Errors are S3-style, ready to send:
 *
 *   status code                            when
 *   400    InvalidRequest                  framing: bare LF, CR without LF, NUL, obs-fold,
 *                                          bad header name or value, missing/duplicate Host,
 *                                          Content-Length with Transfer-Encoding, duplicate or
 *                                          non-numeric Content-Length, Transfer-Encoding on
 *                                          HTTP/1.0, malformed request line or version
 *   400    InvalidURI                      target neither "/..." nor "http(s)://authority..."
 *   400    RequestHeaderSectionTooLarge    head > max_header_bytes, or > max_header_count lines
 *   414    RequestURITooLong               request line > max_request_line
 *   501    NotImplemented                  Transfer-Encoding other than exactly "chunked"
 *   505    HttpVersionNotSupported         HTTP/x.y other than 1.0 and 1.1
 *
 * The codes are those of proxy/s3err.h, so s3err_from_code() finds each of them.
 */
#ifndef S3TEE_PROXY_HTTP1_H
#define S3TEE_PROXY_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#include "common/pool.h"
#include "common/slice.h"

struct http_header {
    struct slice name;  /* as sent (compare with slice_eq_nocase) */
    struct slice value; /* leading and trailing SP/HT removed */
};

/* Zero in any field means "no limit" (tests only: the proxy always configures all three). */
struct http1_limits {
    size_t max_request_line; /* request line without its CRLF */
    size_t max_header_bytes; /* whole head: request line, fields and the final CRLFCRLF */
    size_t max_header_count; /* header field lines */
};

/*
 * A parsed head. Slices point into the buffer given to http1_parse_head() (or, for a few
 * rewritten absolute-form targets, into its pool): keep both until the request is done.
 */
struct http1_request {
    struct slice method;         /* token, e.g. "PUT" (case-sensitive per RFC 9110) */
    struct slice target;         /* origin-form "/b/k?x"; absolute-form reduced to its path */
    int minor;                   /* 0 or 1: HTTP/1.0 or HTTP/1.1 */
    struct http_header *headers; /* every field line in order (array in the pool) */
    size_t nheaders;             /* entries in headers */
    int64_t content_length;      /* -1 when absent */
    int chunked;                 /* Transfer-Encoding: chunked (then content_length is -1) */
    int keep_alive;              /* 1.1 default on, 1.0 default off, then Connection tokens */
    int expect_continue;         /* Expect: 100-continue on HTTP/1.1 (ignored on 1.0) */
    struct slice host;           /* Host value, or the authority of an absolute-form target */
    int host_from_target;        /* 1 when host came from an absolute-form target */
};

/* An S3-style error to answer with; all three strings are static. */
struct http1_error {
    int status;          /* HTTP status; 0 means no error */
    const char *code;    /* S3 <Code>, see the table at the top */
    const char *message; /* human-readable reason, safe to send to the client */
};

/*
 * http1_head_length - is a complete request head in BUF?
 * BUF may be any prefix of the stream; bytes after the head (a pipelined request, the body)
 * are not looked at. Empty lines before the request line are skipped (RFC 9112 2.2) and count
 * towards the head. Returns the head length including the final CRLFCRLF, or 0:
 *   - with ERR->status == 0 when more bytes are needed;
 *   - with ERR filled when the head can never be valid: over a limit (414 / 400
 *     RequestHeaderSectionTooLarge) or broken framing seen early (bare LF, lone CR, NUL: 400).
 *     The caller answers ERR and closes the connection.
 * Each call rescans from the start; the byte limits bound that work.
 */
size_t http1_head_length(const char *buf, size_t len, const struct http1_limits *lim,
                         struct http1_error *err);

/*
 * http1_parse_head - parse a complete head, LEN being what http1_head_length() returned.
 * Fills OUT (slices into BUF; the header array and rare rewritten strings in POOL).
 * Returns PX_OK, or PX_EINVAL with ERR filled (see the table at the top); OUT is then
 * partially filled and must not be used. A parse error leaves the stream unsynchronised:
 * the caller answers and closes.
 */
int http1_parse_head(const char *buf, size_t len, const struct http1_limits *lim, struct pool *pool,
                     struct http1_request *out, struct http1_error *err);
/* http1_parse_head() for a head http1_head_length() has just measured with the same LIM (LEN
 * is its result): skips the second framing scan. */
int http1_parse_scanned_head(const char *buf, size_t len, const struct http1_limits *lim,
                             struct pool *pool, struct http1_request *out, struct http1_error *err);

/* First header named NAME (case-insensitive), or NULL. Borrowed from R. */
const struct http_header *http1_find_header(const struct http1_request *r, struct slice name);
/* Number of header lines named NAME (case-insensitive). */
size_t http1_header_count(const struct http1_request *r, struct slice name);

/* Bounds of the chunked decoder (RFC 9112 7.1 leaves them to us). */
#define HTTP1_CHUNK_LINE_MAX 4096         /* chunk-size line, extensions included, CRLF excluded */
#define HTTP1_TRAILER_MAX (16 * 1024)     /* trailer field lines, their CRLFs included */
#define HTTP1_CHUNK_SIZE_MAX (1ULL << 62) /* largest chunk-size accepted */

/*
 * Chunked transfer-coding decoder state; caller-owned storage, no allocation, no deinit.
 * Members are private to http1.c except TOTAL and ERR, which the caller may read.
 */
struct http1_chunked {
    int state;            /* where in the chunked grammar we are (CH_* in http1.c) */
    uint64_t size;        /* chunk-size being read, then the declared size */
    uint64_t remaining;   /* data bytes of the current chunk not yet returned */
    size_t line_len;      /* bytes of the current chunk-size or trailer line, CRLF excluded */
    size_t trailer_bytes; /* bytes of trailer lines so far, CRLFs included */
    int digits;           /* hex digits seen on the current chunk-size line */
    int line_colon;       /* current trailer line has had its ':' */
    uint64_t total;       /* decoded body bytes returned so far (readable) */
    const char *err;      /* static reason once PX_EINVAL was returned, else NULL (readable) */
};

void http1_chunked_init(struct http1_chunked *c);

/*
 * http1_chunked_feed - decode the next piece of a chunked body from IN.
 * Returns
 *   PX_OK      *CONSUMED bytes of IN were used (> 0 unless the body was already complete)
 *              and *DATA is body data: a slice INTO IN, possibly empty (the last bytes of the
 *              body framing, see http1_chunked_done()). At most one data slice per call:
 *              call again with IN + *CONSUMED.
 *   PX_EAGAIN  all of IN was framing (*CONSUMED == LEN); feed more bytes.
 *   PX_EINVAL  malformed (bad hex, chunk-size above 2^62, CRLF missing after data, line or
 *              trailer over its bound, bare LF, control bytes); C->err says which. Sticky.
 * Once done, the decoder consumes nothing more: the bytes after the body belong to the next
 * request on the connection. Chunk extensions are ignored; trailer fields are discarded.
 */
int http1_chunked_feed(struct http1_chunked *c, const char *in, size_t len, size_t *consumed,
                       struct slice *data);
/* 1 when the last chunk and the trailer section (with its final CRLF) have been consumed. */
int http1_chunked_done(const struct http1_chunked *c);

#endif
