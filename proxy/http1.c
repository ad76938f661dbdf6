/* http1.c - strict sans-I/O HTTP/1.1 request heads and chunked bodies (see http1.h). */
#include "proxy/http1.h"

#include <string.h>

#include "common/status.h"

#define CODE_BAD "InvalidRequest"
#define CODE_URI "InvalidURI"
#define CODE_TOO_LARGE "RequestHeaderSectionTooLarge"

static int
set_err(struct http1_error *err, int status, const char *code, const char *message)
{
    err->status = status;
    err->code = code;
    err->message = message;
    return PX_EINVAL;
}

/* RFC 9110 5.6.2 tchar. */
static int
is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return 1;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Control bytes a field value may not carry: everything below SP but HT, and DEL. */
static int
is_bad_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static size_t
limit_or_max(size_t v)
{
    return v ? v : (size_t)-1;
}

size_t
http1_head_length(const char *buf, size_t len, const struct http1_limits *lim,
                  struct http1_error *err)
{
    size_t max_line = limit_or_max(lim->max_request_line);
    size_t max_head = limit_or_max(lim->max_header_bytes);
    size_t n = len < max_head ? len : max_head;
    size_t line_start = 0;
    int in_request_line = 1;
    size_t i;

    err->status = 0;
    err->code = NULL;
    err->message = NULL;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];

        if (c == '\0') {
            set_err(err, 400, CODE_BAD, "NUL byte in the request head");
            return 0;
        }
        if (i > 0 && buf[i - 1] == '\r' && c != '\n') {
            set_err(err, 400, CODE_BAD, "CR not followed by LF in the request head");
            return 0;
        }
        if (c == '\r') {
            continue;
        }
        if (c != '\n') {
            /* the request line is checked as it grows, so a huge one is refused early */
            if (in_request_line && i - line_start + 1 > max_line) {
                set_err(err, 414, "RequestURITooLong", "the request line is too long");
                return 0;
            }
            continue;
        }
        if (i == 0 || buf[i - 1] != '\r') {
            set_err(err, 400, CODE_BAD, "bare LF line ending in the request head");
            return 0;
        }
        if (i - 1 == line_start) {
            if (!in_request_line) {
                return i + 1; /* the empty line: end of the head */
            }
            /* empty lines before the request line are tolerated (RFC 9112 2.2) */
        } else {
            in_request_line = 0;
        }
        line_start = i + 1;
    }
    if (len >= max_head) {
        set_err(err, 400, CODE_TOO_LARGE, "the request header section is too large");
    }
    return 0;
}

/* Splits the request line "METHOD SP TARGET SP HTTP/1.x" (CRLF excluded). */
static int
parse_request_line(struct slice line, struct pool *pool, struct http1_request *out,
                   struct http1_error *err)
{
    long sp1 = slice_index(line, ' ');
    size_t sp2, i;
    struct slice version, target;

    if (sp1 <= 0) {
        return set_err(err, 400, CODE_BAD, "malformed request line");
    }
    for (sp2 = line.len; sp2 > 0 && line.ptr[sp2 - 1] != ' '; sp2--) {
    }
    sp2--; /* index of the last SP; sp2 >= sp1 since sp1 exists */
    if (sp2 == (size_t)sp1) {
        return set_err(err, 400, CODE_BAD, "malformed request line");
    }
    out->method = slice_make(line.ptr, (size_t)sp1);
    for (i = 0; i < out->method.len; i++) {
        if (!is_tchar((unsigned char)out->method.ptr[i])) {
            return set_err(err, 400, CODE_BAD, "the method is not a token");
        }
    }
    version = slice_make(line.ptr + sp2 + 1, line.len - sp2 - 1);
    if (version.len != 8 || memcmp(version.ptr, "HTTP/", 5) != 0 || version.ptr[5] < '0' ||
        version.ptr[5] > '9' || version.ptr[6] != '.' || version.ptr[7] < '0' ||
        version.ptr[7] > '9') {
        return set_err(err, 400, CODE_BAD, "malformed HTTP version in the request line");
    }
    if (version.ptr[5] != '1' || version.ptr[7] > '1') {
        return set_err(err, 505, "HttpVersionNotSupported",
                       "only HTTP/1.0 and HTTP/1.1 are supported");
    }
    out->minor = version.ptr[7] - '0';

    target = slice_make(line.ptr + sp1 + 1, sp2 - (size_t)sp1 - 1);
    if (target.len == 0) {
        return set_err(err, 400, CODE_BAD, "malformed request line");
    }
    for (i = 0; i < target.len; i++) {
        unsigned char c = (unsigned char)target.ptr[i];

        if (c == ' ') {
            return set_err(err, 400, CODE_BAD, "malformed request line");
        }
        /* obs-text (>= 0x80) passes: some clients send raw UTF-8 keys; s3addr re-encodes */
        if (c < ' ' || c == 0x7f) {
            return set_err(err, 400, CODE_URI, "control byte in the request target");
        }
    }
    if (target.ptr[0] == '/') {
        out->target = target;
        return PX_OK;
    }
    if (slice_starts_with_nocase(target, SLICE_LIT("http://")) ||
        slice_starts_with_nocase(target, SLICE_LIT("https://"))) {
        size_t start = (size_t)slice_index(target, ':') + 3;
        size_t end = start;
        struct slice rest;

        while (end < target.len && target.ptr[end] != '/' && target.ptr[end] != '?') {
            end++;
        }
        out->host = slice_make(target.ptr + start, end - start);
        out->host_from_target = 1;
        if (out->host.len == 0) {
            return set_err(err, 400, CODE_URI, "absolute-form target without a host");
        }
        if (slice_index(out->host, '@') >= 0) {
            return set_err(err, 400, CODE_URI, "user information in the request target");
        }
        rest = slice_make(target.ptr + end, target.len - end);
        if (rest.len == 0) {
            out->target = SLICE_LIT("/");
        } else if (rest.ptr[0] == '?') {
            out->target = slice_cstr(pool_printf(pool, "/%.*s", SLICE_ARGS(rest)));
        } else {
            out->target = rest;
        }
        return PX_OK;
    }
    return set_err(err, 400, CODE_URI, "the request target must start with '/' or 'http://'");
}

/* One "name: value" line (CRLF excluded). */
static int
parse_field(struct slice line, struct http_header *h, struct http1_error *err)
{
    long colon;
    size_t i;

    if (line.ptr[0] == ' ' || line.ptr[0] == '\t') {
        return set_err(err, 400, CODE_BAD, "obsolete header line folding is not accepted");
    }
    colon = slice_index(line, ':');
    if (colon < 0) {
        return set_err(err, 400, CODE_BAD, "header line without ':'");
    }
    if (colon == 0) {
        return set_err(err, 400, CODE_BAD, "empty header name");
    }
    h->name = slice_make(line.ptr, (size_t)colon);
    if (h->name.ptr[h->name.len - 1] == ' ' || h->name.ptr[h->name.len - 1] == '\t') {
        return set_err(err, 400, CODE_BAD, "whitespace between a header name and ':'");
    }
    for (i = 0; i < h->name.len; i++) {
        if (!is_tchar((unsigned char)h->name.ptr[i])) {
            return set_err(err, 400, CODE_BAD, "invalid character in a header name");
        }
    }
    h->value = slice_trim(slice_make(line.ptr + colon + 1, line.len - (size_t)colon - 1));
    for (i = 0; i < h->value.len; i++) {
        if (is_bad_ctl((unsigned char)h->value.ptr[i])) {
            return set_err(err, 400, CODE_BAD, "control character in a header value");
        }
    }
    return PX_OK;
}

/* reg-name / IPv4 / [IPv6] with an optional port: enough to refuse junk and separators. */
static int
host_is_valid(struct slice h)
{
    size_t i;

    for (i = 0; i < h.len; i++) {
        unsigned char c = (unsigned char)h.ptr[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
            continue;
        }
        if (c == '\0' || strchr("-._~!$&'()*+,;=:[]%", c) == NULL) {
            return 0;
        }
    }
    return 1;
}

/* Notes the "close" and "keep-alive" tokens of one Connection value (a comma list). */
static void
connection_tokens(struct slice v, int *has_close, int *has_keep_alive)
{
    while (v.len > 0) {
        long comma = slice_index(v, ',');
        size_t n = comma < 0 ? v.len : (size_t)comma;
        struct slice tok = slice_trim(slice_make(v.ptr, n));

        if (slice_eq_nocase(tok, SLICE_LIT("close"))) {
            *has_close = 1;
        } else if (slice_eq_nocase(tok, SLICE_LIT("keep-alive"))) {
            *has_keep_alive = 1;
        }
        v.ptr += n;
        v.len -= n;
        if (v.len > 0) {
            v.ptr++; /* the comma */
            v.len--;
        }
    }
}

/* Semantics across fields: Host, message framing, persistence, Expect. */
static int
interpret_fields(struct http1_request *out, struct http1_error *err)
{
    size_t nhost = 0, ncl = 0, nte = 0, i;
    int has_close = 0, has_keep_alive = 0;
    const struct http_header *cl = NULL, *te = NULL;
    struct slice host = SLICE_NULL;

    for (i = 0; i < out->nheaders; i++) {
        const struct http_header *h = &out->headers[i];

        if (slice_eq_nocase(h->name, SLICE_LIT("host"))) {
            nhost++;
            host = h->value;
        } else if (slice_eq_nocase(h->name, SLICE_LIT("content-length"))) {
            ncl++;
            cl = h;
        } else if (slice_eq_nocase(h->name, SLICE_LIT("transfer-encoding"))) {
            nte++;
            te = h;
        } else if (slice_eq_nocase(h->name, SLICE_LIT("connection"))) {
            connection_tokens(h->value, &has_close, &has_keep_alive);
        } else if (slice_eq_nocase(h->name, SLICE_LIT("expect"))) {
            /* RFC 9110 10.1.1: a 1.0 request's 100-continue is ignored; other
             * expectations are ignored too rather than answered with 417 */
            if (out->minor == 1 && slice_eq_nocase(h->value, SLICE_LIT("100-continue"))) {
                out->expect_continue = 1;
            }
        }
    }
    /* close wins whatever the order; 1.0 persists only when asked to */
    out->keep_alive = !has_close && (out->minor == 1 || has_keep_alive);

    if (nhost > 1) {
        return set_err(err, 400, CODE_BAD, "more than one Host header");
    }
    if (nhost == 0 && out->minor == 1) {
        return set_err(err, 400, CODE_BAD, "HTTP/1.1 request without a Host header");
    }
    if (nhost == 1 && !host_is_valid(host)) {
        return set_err(err, 400, CODE_BAD, "invalid Host header");
    }
    if (!out->host_from_target) {
        out->host = host; /* RFC 9112 3.2.2: an absolute-form target overrides Host */
    } else if (!host_is_valid(out->host)) {
        return set_err(err, 400, CODE_URI, "invalid host in the request target");
    }

    if (ncl > 1) {
        return set_err(err, 400, CODE_BAD, "more than one Content-Length header");
    }
    if (cl != NULL) {
        uint64_t v;

        if (slice_to_u64(cl->value, &v) != 0 || v > (uint64_t)INT64_MAX) {
            return set_err(err, 400, CODE_BAD, "Content-Length is not a valid number");
        }
        out->content_length = (int64_t)v;
    }
    if (te != NULL) {
        if (out->minor == 0) {
            return set_err(err, 400, CODE_BAD, "Transfer-Encoding is not allowed in HTTP/1.0");
        }
        if (cl != NULL) {
            return set_err(err, 400, CODE_BAD, "both Content-Length and Transfer-Encoding");
        }
        if (nte > 1 || !slice_eq_nocase(te->value, SLICE_LIT("chunked"))) {
            return set_err(err, 501, "NotImplemented",
                           "only 'Transfer-Encoding: chunked' is implemented");
        }
        out->chunked = 1;
    }
    return PX_OK;
}

int
http1_parse_head(const char *buf, size_t len, const struct http1_limits *lim, struct pool *pool,
                 struct http1_request *out, struct http1_error *err)
{
    /* the same framing checks as the incremental scan, and LEN must be exactly the head */
    if (http1_head_length(buf, len, lim, err) != len) {
        memset(out, 0, sizeof(*out));
        if (err->status == 0) {
            set_err(err, 400, CODE_BAD, "incomplete request head");
        }
        return PX_EINVAL;
    }
    return http1_parse_scanned_head(buf, len, lim, pool, out, err);
}

int
http1_parse_scanned_head(const char *buf, size_t len, const struct http1_limits *lim,
                         struct pool *pool, struct http1_request *out, struct http1_error *err)
{
    size_t pos = 0, lines = 0, i, max_count = limit_or_max(lim->max_header_count);
    const char *eol;
    int rc;

    memset(out, 0, sizeof(*out));
    out->content_length = -1;
    err->status = 0;
    err->code = NULL;
    err->message = NULL;
    while (buf[pos] == '\r') {
        pos += 2; /* leading empty lines */
    }
    eol = memchr(buf + pos, '\r', len - pos);
    rc = parse_request_line(slice_make(buf + pos, (size_t)(eol - (buf + pos))), pool, out, err);
    if (rc != PX_OK) {
        return rc;
    }
    pos = (size_t)(eol - buf) + 2;

    /* every CR in the field section ends a line; the last one ends the empty line */
    for (i = pos; i < len; i++) {
        lines += buf[i] == '\r';
    }
    lines--;
    if (lines > max_count) {
        return set_err(err, 400, CODE_TOO_LARGE, "too many header lines");
    }
    out->headers = pool_alloc(pool, (lines ? lines : 1) * sizeof(*out->headers));
    while (out->nheaders < lines) {
        eol = memchr(buf + pos, '\r', len - pos);
        rc = parse_field(slice_make(buf + pos, (size_t)(eol - (buf + pos))),
                         &out->headers[out->nheaders], err);
        if (rc != PX_OK) {
            return rc;
        }
        out->nheaders++;
        pos = (size_t)(eol - buf) + 2;
    }
    return interpret_fields(out, err);
}

const struct http_header *
http1_find_header(const struct http1_request *r, struct slice name)
{
    size_t i;

    for (i = 0; i < r->nheaders; i++) {
        if (slice_eq_nocase(r->headers[i].name, name)) {
            return &r->headers[i];
        }
    }
    return NULL;
}

size_t
http1_header_count(const struct http1_request *r, struct slice name)
{
    size_t i, n = 0;

    for (i = 0; i < r->nheaders; i++) {
        n += slice_eq_nocase(r->headers[i].name, name);
    }
    return n;
}

/* ---- chunked transfer coding (RFC 9112 7.1) ---- */

enum {
    CH_SIZE,       /* hex digits of chunk-size */
    CH_SIZE_WS,    /* whitespace after the digits (BWS before ';' or CRLF) */
    CH_EXT,        /* chunk extensions: skipped up to CR */
    CH_SIZE_LF,    /* LF ending the chunk-size line */
    CH_DATA,       /* chunk data */
    CH_DATA_CR,    /* CR after chunk data */
    CH_DATA_LF,    /* LF after chunk data */
    CH_TRAILER,    /* in a trailer line (or at the start of one) */
    CH_TRAILER_LF, /* LF ending a trailer line */
    CH_END_LF,     /* LF of the empty line that ends the body */
    CH_DONE,       /* body complete */
    CH_ERROR,      /* sticky failure */
};

void
http1_chunked_init(struct http1_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = CH_SIZE;
}

int
http1_chunked_done(const struct http1_chunked *c)
{
    return c->state == CH_DONE;
}

static int
chunk_fail(struct http1_chunked *c, const char *why)
{
    c->state = CH_ERROR;
    c->err = why;
    return PX_EINVAL;
}

/* Counts one byte of the chunk-size line against its bound. */
static int
size_line_byte(struct http1_chunked *c)
{
    return ++c->line_len <= HTTP1_CHUNK_LINE_MAX;
}

int
http1_chunked_feed(struct http1_chunked *c, const char *in, size_t len, size_t *consumed,
                   struct slice *data)
{
    size_t i = 0;

    *consumed = 0;
    *data = slice_make(in, 0);
    if (c->state == CH_ERROR) {
        return PX_EINVAL;
    }
    while (i < len && c->state != CH_DONE) {
        unsigned char ch = (unsigned char)in[i];
        int d;

        switch (c->state) {
        case CH_SIZE:
            if (ch == '\r' || ch == ';' || ch == ' ' || ch == '\t') {
                if (c->digits == 0) {
                    return chunk_fail(c, "chunk-size without hex digits");
                }
                c->state = ch == '\r' ? CH_SIZE_LF : ch == ';' ? CH_EXT : CH_SIZE_WS;
                if (ch != '\r' && !size_line_byte(c)) {
                    return chunk_fail(c, "chunk-size line too long");
                }
                break;
            }
            d = hexval(ch);
            if (d < 0) {
                return chunk_fail(c, "invalid hex digit in chunk-size");
            }
            if (c->size > (HTTP1_CHUNK_SIZE_MAX - (uint64_t)d) / 16) {
                return chunk_fail(c, "chunk-size too large");
            }
            c->size = c->size * 16 + (uint64_t)d;
            c->digits++;
            if (!size_line_byte(c)) {
                return chunk_fail(c, "chunk-size line too long");
            }
            break;
        case CH_SIZE_WS:
            if (ch == '\r') {
                c->state = CH_SIZE_LF;
                break;
            }
            if (ch == ';') {
                c->state = CH_EXT;
            } else if (ch != ' ' && ch != '\t') {
                return chunk_fail(c, "junk after chunk-size");
            }
            if (!size_line_byte(c)) {
                return chunk_fail(c, "chunk-size line too long");
            }
            break;
        case CH_EXT:
            if (ch == '\r') {
                c->state = CH_SIZE_LF;
                break;
            }
            if (is_bad_ctl(ch)) {
                return chunk_fail(c, "control byte in a chunk extension");
            }
            if (!size_line_byte(c)) {
                return chunk_fail(c, "chunk-size line too long");
            }
            break;
        case CH_SIZE_LF:
            if (ch != '\n') {
                return chunk_fail(c, "chunk-size line not ended by CRLF");
            }
            c->line_len = 0;
            c->digits = 0;
            if (c->size == 0) {
                c->state = CH_TRAILER;
            } else {
                c->remaining = c->size;
                c->state = CH_DATA;
            }
            break;
        case CH_DATA: {
            size_t n = len - i;

            if (n > c->remaining) {
                n = (size_t)c->remaining;
            }
            c->remaining -= n;
            c->total += n;
            if (c->remaining == 0) {
                c->state = CH_DATA_CR;
            }
            *data = slice_make(in + i, n);
            *consumed = i + n;
            return PX_OK;
        }
        case CH_DATA_CR:
            if (ch != '\r') {
                return chunk_fail(c, "chunk data not followed by CRLF");
            }
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n') {
                return chunk_fail(c, "chunk data not followed by CRLF");
            }
            c->size = 0;
            c->state = CH_SIZE;
            break;
        case CH_TRAILER:
            if (ch == '\r') {
                if (c->line_len == 0) {
                    c->state = CH_END_LF;
                    break;
                }
                if (!c->line_colon) {
                    return chunk_fail(c, "trailer line without ':'");
                }
                c->state = CH_TRAILER_LF;
            } else if (is_bad_ctl(ch)) {
                return chunk_fail(c, "control byte or bare LF in the trailer section");
            } else if (c->line_len == 0 && (ch == ' ' || ch == '\t' || ch == ':')) {
                return chunk_fail(c, "folded or nameless trailer line");
            } else {
                c->line_colon |= ch == ':';
                c->line_len++;
            }
            if (++c->trailer_bytes > HTTP1_TRAILER_MAX) {
                return chunk_fail(c, "trailer section too large");
            }
            break;
        case CH_TRAILER_LF:
            if (ch != '\n') {
                return chunk_fail(c, "trailer line not ended by CRLF");
            }
            if (++c->trailer_bytes > HTTP1_TRAILER_MAX) {
                return chunk_fail(c, "trailer section too large");
            }
            c->line_len = 0;
            c->line_colon = 0;
            c->state = CH_TRAILER;
            break;
        case CH_END_LF:
            if (ch != '\n') {
                return chunk_fail(c, "chunked body not ended by CRLF");
            }
            c->state = CH_DONE;
            break;
        default:
            return chunk_fail(c, "decoder state corrupted");
        }
        i++;
    }
    *consumed = i;
    if (c->state == CH_DONE) {
        return PX_OK;
    }
    return PX_EAGAIN;
}
