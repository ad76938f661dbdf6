/* Unit tests for proxy/http1.c: strict request heads, limits, chunked bodies. */
#include "proxy/http1.c"

#include <stdlib.h>

#include "common/status.h"
#include "test.h"

static struct pool pool;
static const struct http1_limits lim = {8192, 65536, 100};

/* Parses the NUL-terminated head S (its whole length) with limits L. */
static int
parse_lim(const char *s, const struct http1_limits *l, struct http1_request *r,
          struct http1_error *e)
{
    return http1_parse_head(s, strlen(s), l, &pool, r, e);
}

static int
parse(const char *s, struct http1_request *r, struct http1_error *e)
{
    return parse_lim(s, &lim, r, e);
}

static int
slice_is(struct slice s, const char *want)
{
    return slice_eq(s, slice_cstr(want));
}

/* Expects HEAD to be refused by http1_parse_head() with STATUS and CODE. */
static void
refused(const char *head, int status, const char *code, const char *what)
{
    struct http1_request r;
    struct http1_error e;
    int rc = parse(head, &r, &e);

    ok(rc == PX_EINVAL && e.status == status && e.code != NULL && strcmp(e.code, code) == 0 &&
           e.message != NULL,
       "%s -> %d %s", what, status, code);
    if (rc == PX_EINVAL && e.status != status) {
        printf("#   got %d %s: %s\n", e.status, e.code ? e.code : "-", e.message ? e.message : "-");
    }
}

static void
accepted(const char *head, const char *what)
{
    struct http1_request r;
    struct http1_error e;
    int rc = parse(head, &r, &e);

    ok(rc == PX_OK, "%s is accepted", what);
    if (rc != PX_OK) {
        printf("#   got %d %s: %s\n", e.status, e.code, e.message);
    }
}

static void
test_basic(void)
{
    const char *h = "PUT /bucket/key?x=1 HTTP/1.1\r\n"
                    "Host: s3.example.com:8000\r\n"
                    "Content-Length:  11 \r\n"
                    "X-Amz-Meta-A:\tv a l\t\r\n"
                    "x-empty:\r\n"
                    "\r\n";
    struct http1_request r;
    struct http1_error e;

    ok(parse(h, &r, &e) == PX_OK, "simple PUT parses");
    ok(slice_is(r.method, "PUT"), "method");
    ok(slice_is(r.target, "/bucket/key?x=1"), "target");
    ok(r.minor == 1, "minor version 1");
    ok(slice_is(r.host, "s3.example.com:8000") && !r.host_from_target, "host from Host header");
    ok(r.nheaders == 4, "four headers");
    ok(r.content_length == 11 && !r.chunked, "content-length 11, trimmed");
    ok(slice_is(r.headers[2].name, "X-Amz-Meta-A") && slice_is(r.headers[2].value, "v a l"),
       "value trimmed of SP/HT at both ends, inner spaces kept");
    ok(slice_is(r.headers[3].value, ""), "empty value");
    ok(r.keep_alive == 1 && r.expect_continue == 0, "1.1 keep-alive by default, no expect");
    ok(r.method.ptr >= h && r.method.ptr < h + strlen(h), "slices point into the buffer");

    ok(http1_find_header(&r, SLICE_LIT("content-LENGTH")) == &r.headers[1],
       "find_header is case-insensitive");
    ok(http1_find_header(&r, SLICE_LIT("x-missing")) == NULL, "find_header misses -> NULL");
    ok(http1_header_count(&r, SLICE_LIT("HOST")) == 1, "header_count 1");
    ok(http1_header_count(&r, SLICE_LIT("nope")) == 0, "header_count 0");

    ok(parse("GET / HTTP/1.0\r\n\r\n", &r, &e) == PX_OK && r.nheaders == 0 && r.minor == 0 &&
           r.host.len == 0 && r.content_length == -1,
       "HTTP/1.0 without headers");
    ok(parse("DELETE /b/k HTTP/1.1\r\nhost: h\r\nA: 1\r\na: 2\r\n\r\n", &r, &e) == PX_OK &&
           http1_header_count(&r, SLICE_LIT("a")) == 2 &&
           slice_is(http1_find_header(&r, SLICE_LIT("A"))->value, "1"),
       "repeated header: count 2, find returns the first");
    ok(parse("GET /%E2%82%AC/\xe2\x82\xac HTTP/1.1\r\nHost: h\r\n\r\n", &r, &e) == PX_OK &&
           slice_is(r.target, "/%E2%82%AC/\xe2\x82\xac"),
       "raw UTF-8 bytes in the target are kept");
    ok(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\x80\xff b\r\n\r\n", &r, &e) == PX_OK,
       "obs-text in a value is accepted");
    ok(parse("\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n", &r, &e) == PX_OK &&
           slice_is(r.target, "/x"),
       "empty lines before the request line are skipped");
    ok(parse("GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n", &r, &e) == PX_OK &&
           slice_is(r.host, "[::1]:8000"),
       "IPv6 literal Host");
    ok(parse("GET / HTTP/1.1\r\nHost:\r\n\r\n", &r, &e) == PX_OK && r.host.len == 0,
       "empty Host is accepted (path-style, no vhost)");
    ok(parse("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", &r, &e) == PX_OK &&
           r.content_length == 0,
       "Content-Length 0");
    ok(parse("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n", &r, &e) == PX_OK &&
           r.content_length == 7,
       "Content-Length with leading zeros");
    ok(parse("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n", &r, &e) ==
               PX_OK &&
           r.content_length == INT64_MAX,
       "Content-Length INT64_MAX");
    ok(parse("POST /b/k?uploads HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n", &r,
             &e) == PX_OK &&
           r.chunked && r.content_length == -1,
       "Transfer-Encoding: CHUNKED (case-insensitive)");
    ok(parse("PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:  chunked \r\n\r\n", &r, &e) ==
               PX_OK &&
           r.chunked,
       "Transfer-Encoding value trimmed");
}

static void
test_smuggling(void)
{
    refused(
        "PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        400, "InvalidRequest", "CL then TE");
    refused(
        "PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        400, "InvalidRequest", "TE then CL");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400,
            "InvalidRequest", "duplicate equal Content-Length");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n", 400,
            "InvalidRequest", "duplicate different Content-Length");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", 400, "InvalidRequest",
            "Content-Length list");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 12a\r\n\r\n", 400, "InvalidRequest",
            "Content-Length with a letter");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400, "InvalidRequest",
            "negative Content-Length");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400, "InvalidRequest",
            "Content-Length with '+'");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", 400, "InvalidRequest",
            "hex Content-Length");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", 400, "InvalidRequest",
            "Content-Length with inner space");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400, "InvalidRequest",
            "empty Content-Length");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775808\r\n\r\n", 400,
            "InvalidRequest", "Content-Length INT64_MAX+1");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400,
            "InvalidRequest", "Content-Length overflowing 64 bits");

    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
            "NotImplemented", "TE gzip, chunked");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 501,
            "NotImplemented", "TE chunked, identity");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", 501,
            "NotImplemented", "TE xchunked");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunkedx\r\n\r\n", 501,
            "NotImplemented", "TE chunkedx");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 501,
            "NotImplemented", "TE identity");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 501,
            "NotImplemented", "TE quoted chunked");
    refused("PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
            "Transfer-Encoding: chunked\r\n\r\n",
            501, "NotImplemented", "TE chunked twice (means chunked, chunked)");
    refused("PUT /b/k HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "InvalidRequest",
            "TE on HTTP/1.0");
    refused("PUT /b/k HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "InvalidRequest",
            "unknown TE on HTTP/1.0 is a 400 first");

    refused("GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n c\r\n\r\n", 400, "InvalidRequest",
            "obs-fold continuation with SP");
    refused("GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n\tc\r\n\r\n", 400, "InvalidRequest",
            "obs-fold continuation with HT");
    refused("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400, "InvalidRequest",
            "first header line starting with SP");
    refused("GET / HTTP/1.1\nHost: h\r\n\r\n", 400, "InvalidRequest", "bare LF after request line");
    refused("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400, "InvalidRequest", "bare LF in headers");
    refused("GET / HTTP/1.1\r\nHost: h\r\n\n", 400, "InvalidRequest", "bare LF ending the head");
    refused("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400, "InvalidRequest",
            "CR inside a value");
    refused("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n\r\n", 400, "InvalidRequest", "CR CR LF");
    refused("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400, "InvalidRequest", "space before ':'");
    refused("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400, "InvalidRequest", "tab before ':'");
    refused("GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400, "InvalidRequest", "empty header name");
    refused("GET / HTTP/1.1\r\nHost: h\r\nX(a): v\r\n\r\n", 400, "InvalidRequest",
            "'(' in a header name");
    refused("GET / HTTP/1.1\r\nHost: h\r\nX a: v\r\n\r\n", 400, "InvalidRequest",
            "space inside a header name");
    refused("GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: v\r\n\r\n", 400, "InvalidRequest",
            "non-ASCII header name");
    refused("GET / HTTP/1.1\r\nHost: h\r\nno colon here\r\n\r\n", 400, "InvalidRequest",
            "header line without ':'");
    refused("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01\r\n\r\n", 400, "InvalidRequest",
            "\\x01 in a value");
    refused("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400, "InvalidRequest",
            "DEL in a value");
    refused("GET / HTTP/1.1\r\nHost: h\r\nX: a\x0b"
            "b\r\n\r\n",
            400, "InvalidRequest", "VT in a value");
    accepted("GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\r\n\r\n", "HT inside a value");

    /* NUL cannot go through strlen(): build the heads by hand */
    {
        static const char nul_value[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
        static const char nul_name[] = "GET / HTTP/1.1\r\nHost: h\r\nX\0: b\r\n\r\n";
        static const char nul_target[] = "GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n";
        const char *cases[] = {nul_value, nul_name, nul_target};
        const size_t lens[] = {sizeof(nul_value) - 1, sizeof(nul_name) - 1, sizeof(nul_target) - 1};
        const char *names[] = {"value", "name", "target"};
        size_t i;

        for (i = 0; i < 3; i++) {
            struct http1_request r;
            struct http1_error e;

            ok(http1_parse_head(cases[i], lens[i], &lim, &pool, &r, &e) == PX_EINVAL &&
                   e.status == 400 && strcmp(e.code, "InvalidRequest") == 0,
               "NUL in the %s -> 400 InvalidRequest", names[i]);
            ok(http1_head_length(cases[i], lens[i], &lim, &e) == 0 && e.status == 400,
               "NUL in the %s is refused by head_length already", names[i]);
        }
    }
}

static void
test_request_line(void)
{
    struct http1_request r;
    struct http1_error e;

    refused("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidRequest", "two spaces after method");
    refused("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidRequest",
            "two spaces before version");
    refused("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400, "InvalidRequest", "trailing space");
    refused(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidRequest", "leading space");
    refused("GET /\r\nHost: h\r\n\r\n", 400, "InvalidRequest", "no version (HTTP/0.9)");
    refused("GET\r\nHost: h\r\n\r\n", 400, "InvalidRequest", "method alone");
    refused("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidRequest", "tab as separator");
    refused("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidRequest", "method not a token");
    refused("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "HttpVersionNotSupported", "HTTP/2.0");
    refused("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505, "HttpVersionNotSupported", "HTTP/1.2");
    refused("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505, "HttpVersionNotSupported", "HTTP/0.9");
    refused("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400, "InvalidRequest", "HTTP/1.10");
    refused("GET / HTTP/1\r\nHost: h\r\n\r\n", 400, "InvalidRequest", "HTTP/1");
    refused("GET / http/1.1\r\nHost: h\r\n\r\n", 400, "InvalidRequest", "lowercase http/1.1");
    refused("GET / HTTX/1.1\r\nHost: h\r\n\r\n", 400, "InvalidRequest", "HTTX/1.1");
    refused("GET / HTTP/a.1\r\nHost: h\r\n\r\n", 400, "InvalidRequest", "HTTP/a.1");
    refused("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidURI", "asterisk-form");
    refused("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidURI", "authority-form");
    refused("GET bucket/key HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidURI", "relative target");
    refused("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidURI", "control byte in target");
    refused("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidURI", "DEL in target");
    refused("GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidURI", "ftp:// target");
    refused("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidURI",
            "absolute-form without host");
    refused("GET http://u:p@h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidURI",
            "absolute-form with userinfo");
    refused("GET http://h\"x/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, "InvalidURI",
            "absolute-form with a bad host byte");
    accepted("get / HTTP/1.1\r\nHost: h\r\n\r\n", "lowercase method (a token; S3 will refuse)");

    ok(parse("GET http://b.s3.example.com:8000/k%20x?uploads HTTP/1.1\r\nHost: other\r\n\r\n", &r,
             &e) == PX_OK &&
           slice_is(r.target, "/k%20x?uploads") && slice_is(r.host, "b.s3.example.com:8000") &&
           r.host_from_target,
       "absolute-form: path kept, host from the target overrides Host");
    ok(parse("GET HTTP://h HTTP/1.1\r\nHost: h\r\n\r\n", &r, &e) == PX_OK &&
           slice_is(r.target, "/") && slice_is(r.host, "h"),
       "absolute-form without path -> '/' (scheme case-insensitive)");
    ok(parse("GET https://h?list-type=2 HTTP/1.1\r\nHost: h\r\n\r\n", &r, &e) == PX_OK &&
           slice_is(r.target, "/?list-type=2"),
       "absolute-form with a query and no path -> '/?query'");
    ok(parse("GET http://h/b/k HTTP/1.0\r\n\r\n", &r, &e) == PX_OK && slice_is(r.host, "h") &&
           slice_is(r.target, "/b/k"),
       "absolute-form on HTTP/1.0 without Host");
    refused("GET http://h/b/k HTTP/1.1\r\n\r\n", 400, "InvalidRequest",
            "absolute-form on 1.1 still needs Host");

    refused("GET / HTTP/1.1\r\n\r\n", 400, "InvalidRequest", "1.1 without Host");
    refused("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "InvalidRequest", "two Host");
    refused("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400, "InvalidRequest",
            "two Host on 1.0");
    refused("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "InvalidRequest", "space in Host");
    refused("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "InvalidRequest", "'/' in Host");
    refused("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400, "InvalidRequest", "'@' in Host");
}

static void
test_connection(void)
{
    struct http1_request r;
    struct http1_error e;

    ok(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", &r, &e) == PX_OK &&
           !r.keep_alive,
       "1.1 + close -> close");
    ok(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", &r, &e) ==
               PX_OK &&
           !r.keep_alive,
       "1.1 + keep-alive, close -> close wins");
    ok(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade ,close\r\n\r\n", &r, &e) == PX_OK &&
           !r.keep_alive,
       "close in a list with odd spacing");
    ok(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", &r, &e) == PX_OK &&
           r.keep_alive,
       "'closed' is not 'close'");
    ok(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", &r, &e) == PX_OK &&
           r.keep_alive,
       "1.1 + keep-alive");
    ok(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: ,,\r\n\r\n", &r, &e) == PX_OK &&
           r.keep_alive,
       "empty list elements are ignored");
    ok(parse("GET / HTTP/1.0\r\n\r\n", &r, &e) == PX_OK && !r.keep_alive, "1.0 closes by default");
    ok(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r, &e) == PX_OK && r.keep_alive,
       "1.0 + keep-alive");
    ok(parse("GET / HTTP/1.0\r\nConnection: KEEP-ALIVE\r\nConnection: close\r\n\r\n", &r, &e) ==
               PX_OK &&
           !r.keep_alive,
       "1.0 keep-alive then close in a second header -> close");
    ok(parse("GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n", &r, &e) ==
               PX_OK &&
           !r.keep_alive,
       "close then keep-alive -> close");

    ok(parse("PUT /b/k HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", &r, &e) == PX_OK &&
           r.expect_continue,
       "Expect: 100-continue");
    ok(parse("PUT /b/k HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n\r\n", &r, &e) == PX_OK &&
           r.expect_continue,
       "Expect value is case-insensitive");
    ok(parse("PUT /b/k HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &r, &e) == PX_OK &&
           !r.expect_continue,
       "Expect ignored on HTTP/1.0");
    ok(parse("PUT /b/k HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n", &r, &e) == PX_OK &&
           !r.expect_continue,
       "other expectations ignored");
}

/* A head "GET /<pad> HTTP/1.1\r\nHost: h\r\n\r\n" whose request line is LINE_LEN bytes. */
static char *
head_with_line(size_t line_len)
{
    static const char pre[] = "GET /", post[] = " HTTP/1.1";
    size_t pad = line_len - (sizeof(pre) - 1) - (sizeof(post) - 1);
    char *s = malloc(line_len + 64);

    memcpy(s, pre, sizeof(pre) - 1);
    memset(s + sizeof(pre) - 1, 'a', pad);
    strcpy(s + sizeof(pre) - 1 + pad, " HTTP/1.1\r\nHost: h\r\n\r\n");
    return s;
}

/* A head of exactly TOTAL bytes: a padded X-Pad header makes up the size. */
static char *
head_of_size(size_t total)
{
    static const char pre[] = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
    size_t pad = total - (sizeof(pre) - 1) - 4;
    char *s = malloc(total + 1);

    memcpy(s, pre, sizeof(pre) - 1);
    memset(s + sizeof(pre) - 1, 'p', pad);
    memcpy(s + sizeof(pre) - 1 + pad, "\r\n\r\n", 5);
    return s;
}

/* A head with N header lines besides Host. */
static char *
head_with_fields(size_t n)
{
    char *s = malloc(64 + n * 16), *w = s;
    size_t i;

    w += sprintf(w, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (i = 0; i < n; i++) {
        w += sprintf(w, "X-%zu: v\r\n", i);
    }
    strcpy(w, "\r\n");
    return s;
}

static void
test_limits(void)
{
    struct http1_limits l = {100, 512, 10};
    struct http1_request r;
    struct http1_error e;
    char *s;

    s = head_with_line(100);
    ok(parse_lim(s, &l, &r, &e) == PX_OK, "request line exactly max_request_line passes");
    ok(http1_head_length(s, 100, &l, &e) == 0 && e.status == 0,
       "request line at the limit, CR not yet seen: need more");
    free(s);
    s = head_with_line(101);
    ok(parse_lim(s, &l, &r, &e) == PX_EINVAL && e.status == 414 &&
           strcmp(e.code, "RequestURITooLong") == 0,
       "request line max+1 -> 414 RequestURITooLong");
    ok(http1_head_length(s, 101, &l, &e) == 0 && e.status == 414,
       "request line max+1 refused before its CRLF arrives");
    ok(http1_head_length(s, 100, &l, &e) == 0 && e.status == 0, "...but not one byte earlier");
    free(s);
    ok(http1_head_length("\r\n\r\nGET / HTTP/1.1\r\n", 20, &l, &e) == 0 && e.status == 0,
       "leading empty lines do not count as the request line");

    s = head_of_size(512);
    ok(parse_lim(s, &l, &r, &e) == PX_OK, "head of exactly max_header_bytes passes");
    ok(http1_head_length(s, 512, &l, &e) == 512, "head_length at the byte limit");
    ok(http1_head_length(s, 511, &l, &e) == 0 && e.status == 0, "one byte short: need more");
    free(s);
    s = head_of_size(513);
    ok(parse_lim(s, &l, &r, &e) == PX_EINVAL && e.status == 400 &&
           strcmp(e.code, "RequestHeaderSectionTooLarge") == 0,
       "head of max_header_bytes+1 -> 400 RequestHeaderSectionTooLarge");
    ok(http1_head_length(s, 512, &l, &e) == 0 && e.status == 400,
       "incomplete head reaching the byte limit is refused early");
    ok(http1_head_length(s, 511, &l, &e) == 0 && e.status == 0, "...but not one byte earlier");
    free(s);

    s = head_with_fields(9); /* + Host = 10 */
    ok(parse_lim(s, &l, &r, &e) == PX_OK && r.nheaders == 10,
       "exactly max_header_count lines pass");
    free(s);
    s = head_with_fields(10);
    ok(parse_lim(s, &l, &r, &e) == PX_EINVAL && e.status == 400 &&
           strcmp(e.code, "RequestHeaderSectionTooLarge") == 0,
       "max_header_count+1 lines -> 400 RequestHeaderSectionTooLarge");
    free(s);

    {
        struct http1_limits none = {0, 0, 0};

        s = head_with_fields(1000);
        ok(parse_lim(s, &none, &r, &e) == PX_OK && r.nheaders == 1001,
           "zero limits mean unlimited");
        free(s);
    }
}

static void
test_head_length(void)
{
    const char *h = "PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
    size_t n = strlen(h), i;
    int all_wait = 1;
    char buf[256];
    struct http1_error e;
    struct http1_request r;

    for (i = 0; i < n; i++) {
        if (http1_head_length(h, i, &lim, &e) != 0 || e.status != 0) {
            all_wait = 0;
            printf("# prefix %zu misjudged\n", i);
        }
    }
    ok(all_wait, "every strict prefix of the head: need more, no error");
    ok(http1_head_length(h, n, &lim, &e) == n && e.status == 0, "whole head: its length");

    /* pipelined body and next request are not part of the head */
    snprintf(buf, sizeof(buf), "%sabcGET / HTTP/1.1\r\nHost: h\r\n\r\n", h);
    ok(http1_head_length(buf, strlen(buf), &lim, &e) == n, "bytes after the head not consumed");
    ok(http1_parse_head(buf, n, &lim, &pool, &r, &e) == PX_OK && r.content_length == 3,
       "parse of the head inside a longer buffer");
    ok(http1_head_length(buf + n + 3, strlen(buf) - n - 3, &lim, &e) == strlen(buf) - n - 3,
       "the pipelined request is found after the body");
    snprintf(buf, sizeof(buf), "%s%s", h, h);
    ok(http1_head_length(buf, strlen(buf), &lim, &e) == n, "two pipelined heads: first only");
    ok(http1_parse_head(buf, strlen(buf), &lim, &pool, &r, &e) == PX_EINVAL && e.status == 400,
       "parse_head with LEN beyond the head is refused");
    ok(http1_parse_head(h, n - 1, &lim, &pool, &r, &e) == PX_EINVAL && e.status == 400,
       "parse_head of an incomplete head is refused");
    ok(http1_head_length("", 0, &lim, &e) == 0 && e.status == 0, "empty buffer: need more");
    ok(http1_head_length("\r\n\r\n", 4, &lim, &e) == 0 && e.status == 0,
       "only empty lines: still waiting for a request line");
    ok(http1_head_length("GET / HTTP/1.1\r", 15, &lim, &e) == 0 && e.status == 0,
       "CR at the end of the buffer waits for its LF");
    ok(http1_head_length("GET / HTTP/1.1\rX", 16, &lim, &e) == 0 && e.status == 400,
       "CR then not LF: refused early");
    ok(http1_head_length("GET / HTTP/1.1\n", 15, &lim, &e) == 0 && e.status == 400,
       "bare LF: refused early");
}

/* ---- chunked ---- */

struct run {
    int rc;          /* 0 done, 1 incomplete, -1 refused */
    size_t used;     /* input bytes consumed when done */
    char out[40000]; /* decoded body */
    size_t outlen;
    const char *err; /* decoder's reason when refused */
};

/*
 * Feeds IN in pieces: first [0, FIRST), then blocks of STEP bytes (STEP 0 = the rest at
 * once). Follows the feed contract exactly and checks it as it goes.
 */
static int
run_chunked(const char *in, size_t n, size_t first, size_t step, struct run *res)
{
    struct http1_chunked c;
    size_t off = 0;
    int contract_ok = 1;

    http1_chunked_init(&c);
    res->rc = 1;
    res->used = 0;
    res->outlen = 0;
    res->err = NULL;
    while (off < n) {
        size_t seg = off == 0 && first ? first : step ? step : n - off, pos = 0;

        if (seg > n - off) {
            seg = n - off;
        }
        while (pos < seg) {
            size_t consumed;
            struct slice data;
            int rc = http1_chunked_feed(&c, in + off + pos, seg - pos, &consumed, &data);

            if (rc == PX_EINVAL) {
                res->rc = -1;
                res->err = c.err;
                return contract_ok;
            }
            if (rc == PX_EAGAIN) {
                contract_ok &= consumed == seg - pos && data.len == 0;
                pos = seg;
                break;
            }
            contract_ok &= rc == PX_OK && consumed > 0 && consumed <= seg - pos;
            contract_ok &= data.len == 0 || (data.ptr >= in + off + pos &&
                                             data.ptr + data.len <= in + off + pos + consumed);
            if (res->outlen + data.len <= sizeof(res->out)) {
                memcpy(res->out + res->outlen, data.ptr, data.len);
            }
            res->outlen += data.len;
            pos += consumed;
            if (http1_chunked_done(&c)) {
                size_t again;

                res->rc = 0;
                res->used = off + pos;
                /* a finished decoder takes nothing more */
                contract_ok &= http1_chunked_feed(&c, "x", 1, &again, &data) == PX_OK &&
                               again == 0 && data.len == 0;
                contract_ok &= c.total == res->outlen;
                return contract_ok;
            }
        }
        off += seg;
    }
    return contract_ok;
}

/* Decodes BODY whole, at every split point and byte by byte: same result every time. */
static void
chunked_valid(const char *body, size_t n, const char *want, size_t wantlen, size_t used,
              const char *what)
{
    static struct run res;
    size_t split;
    int all = 1;

    ok(run_chunked(body, n, 0, 0, &res) && res.rc == 0 && res.outlen == wantlen &&
           memcmp(res.out, want, wantlen) == 0 && res.used == used,
       "%s: whole", what);
    if (res.rc != 0) {
        printf("#   rc %d err %s\n", res.rc, res.err ? res.err : "-");
    }
    for (split = 1; split < n; split++) {
        if (!run_chunked(body, n, split, 0, &res) || res.rc != 0 || res.outlen != wantlen ||
            memcmp(res.out, want, wantlen) != 0 || res.used != used) {
            all = 0;
            printf("#   split at %zu fails\n", split);
        }
    }
    ok(all, "%s: split at every position", what);
    ok(run_chunked(body, n, 0, 1, &res) && res.rc == 0 && res.outlen == wantlen &&
           memcmp(res.out, want, wantlen) == 0 && res.used == used,
       "%s: byte by byte", what);
}

#define VALID(body, want, what)                                                                    \
    chunked_valid(body, sizeof(body) - 1, want, sizeof(want) - 1, sizeof(body) - 1, what)

/* Refused whole and byte by byte. */
static void
chunked_invalid(const char *body, size_t n, const char *what)
{
    static struct run res;
    int whole = run_chunked(body, n, 0, 0, &res) && res.rc == -1 && res.err != NULL;
    int bytes = run_chunked(body, n, 0, 1, &res) && res.rc == -1 && res.err != NULL;

    ok(whole && bytes, "%s is refused (%s)", what, res.err ? res.err : "not refused");
}

#define INVALID(body, what) chunked_invalid(body, sizeof(body) - 1, what)

static void
test_chunked(void)
{
    static struct run res;
    struct http1_chunked c;
    struct slice data;
    size_t consumed;
    char *big;

    VALID("5\r\nhello\r\n0\r\n\r\n", "hello", "one chunk");
    VALID("3\r\nabc\r\n4\r\ndefg\r\n1\r\nh\r\n0\r\n\r\n", "abcdefgh", "three chunks");
    VALID("0\r\n\r\n", "", "empty body");
    VALID("A\r\n0123456789\r\n0\r\n\r\n", "0123456789", "uppercase hex");
    VALID("a\r\n0123456789\r\n0\r\n\r\n", "0123456789", "lowercase hex");
    VALID("1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n", "0123456789abcdef0123456789abcde",
          "two hex digits, mixed case");
    VALID("0005\r\nhello\r\n000\r\n\r\n", "hello", "leading zeros");
    VALID("5;name=value\r\nhello\r\n0;last;q=\"x y\"\r\n\r\n", "hello", "chunk extensions");
    VALID("5 ;a=b\r\nhello\r\n0\t\r\n\r\n", "hello", "whitespace before ';' and CRLF");
    VALID("3\r\n\r\n\r\r\n0\r\n\r\n", "\r\n\r", "CR and LF inside chunk data");
    VALID("5\r\nhello\r\n0\r\nX-Checksum: abc\r\nY:z\r\n\r\n", "hello", "trailer fields");
    VALID("5\r\nhello\r\n0\r\nX: a\tb\r\n\r\n", "hello", "HT in a trailer value");
    {
        static const char piped[] = "2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n";

        chunked_valid(piped, sizeof(piped) - 1, "hi", 2, 12,
                      "pipelined request after the body is left alone");
    }

    INVALID("g\r\nhello\r\n0\r\n\r\n", "bad hex digit");
    INVALID("5x\r\nhello\r\n0\r\n\r\n", "hex followed by junk");
    INVALID("-5\r\nhello\r\n0\r\n\r\n", "negative size");
    INVALID("0x5\r\nhello\r\n0\r\n\r\n", "0x prefix");
    INVALID("\r\nhello\r\n0\r\n\r\n", "empty chunk-size");
    INVALID(";ext\r\n", "extension without size");
    INVALID(" 5\r\nhello\r\n0\r\n\r\n", "leading space");
    INVALID("5 x\r\nhello\r\n", "junk after whitespace");
    INVALID("5\nhello\r\n0\r\n\r\n", "bare LF after chunk-size");
    INVALID("5\rxhello", "CR not followed by LF after chunk-size");
    INVALID("5;a\x01\r\nhello", "control byte in an extension");
    INVALID("5;a\nhello", "bare LF in an extension");
    INVALID("5\r\nhelloX\r\n0\r\n\r\n", "data longer than chunk-size (no CRLF after data)");
    INVALID("5\r\nhello\n0\r\n\r\n", "bare LF after data");
    INVALID("5\r\nhello\rX0\r\n\r\n", "CR then junk after data");
    INVALID("4000000000000001\r\n", "chunk-size 2^62+1");
    INVALID("10000000000000000\r\n", "chunk-size 2^64");
    INVALID("FFFFFFFFFFFFFFFFFFFFFFFF\r\n", "chunk-size far above 64 bits");
    INVALID("0\r\nX: a\n\r\n", "bare LF in the trailer");
    INVALID("0\r\nX: a\rb\r\n\r\n", "CR inside a trailer line");
    INVALID("0\r\nno colon\r\n\r\n", "trailer line without ':'");
    INVALID("0\r\n folded: x\r\n\r\n", "trailer line starting with SP");
    INVALID("0\r\n: x\r\n\r\n", "trailer line with an empty name");
    INVALID("0\r\nX: \x7f\r\n\r\n", "DEL in the trailer");
    INVALID("0\r\n\rX", "last CRLF broken");
    INVALID("0\r\n\n", "bare LF ending the body");

    http1_chunked_init(&c);
    ok(http1_chunked_feed(&c, "4000000000000000\r\n", 18, &consumed, &data) == PX_EAGAIN &&
           consumed == 18 && c.remaining == HTTP1_CHUNK_SIZE_MAX,
       "chunk-size exactly 2^62 is accepted");
    ok(http1_chunked_feed(&c, "abc", 3, &consumed, &data) == PX_OK && consumed == 3 &&
           data.len == 3 && c.total == 3,
       "...and its data streams");
    ok(http1_chunked_feed(&c, "", 0, &consumed, &data) == PX_EAGAIN && consumed == 0,
       "empty input: PX_EAGAIN, nothing consumed");

    http1_chunked_init(&c);
    ok(http1_chunked_feed(&c, "z", 1, &consumed, &data) == PX_EINVAL && c.err != NULL,
       "error reported");
    ok(http1_chunked_feed(&c, "0\r\n\r\n", 5, &consumed, &data) == PX_EINVAL && consumed == 0,
       "errors are sticky");

    /* chunk-size line bound: "1;" + extension, CRLF excluded */
    big = malloc(HTTP1_TRAILER_MAX + 64);
    memcpy(big, "1;", 2);
    memset(big + 2, 'e', HTTP1_CHUNK_LINE_MAX - 2);
    memcpy(big + HTTP1_CHUNK_LINE_MAX, "\r\nx\r\n0\r\n\r\n", 10);
    ok(run_chunked(big, HTTP1_CHUNK_LINE_MAX + 10, 0, 0, &res) && res.rc == 0 && res.outlen == 1 &&
           res.out[0] == 'x',
       "chunk-size line of exactly %d bytes passes", HTTP1_CHUNK_LINE_MAX);
    memset(big + 2, 'e', HTTP1_CHUNK_LINE_MAX - 1);
    memcpy(big + HTTP1_CHUNK_LINE_MAX + 1, "\r\nx\r\n0\r\n\r\n", 10);
    ok(run_chunked(big, HTTP1_CHUNK_LINE_MAX + 11, 0, 0, &res) && res.rc == -1,
       "chunk-size line of %d bytes is refused", HTTP1_CHUNK_LINE_MAX + 1);
    memset(big, '0', HTTP1_CHUNK_LINE_MAX + 1);
    ok(run_chunked(big, HTTP1_CHUNK_LINE_MAX + 1, 0, 0, &res) && res.rc == -1,
       "endless leading zeros are refused by the line bound");
    http1_chunked_init(&c);
    memset(big, 'e', HTTP1_CHUNK_LINE_MAX + 1);
    memcpy(big, "1;", 2);
    ok(http1_chunked_feed(&c, big, HTTP1_CHUNK_LINE_MAX, &consumed, &data) == PX_EAGAIN &&
           http1_chunked_feed(&c, big, 1, &consumed, &data) == PX_EINVAL,
       "an overlong line is refused before its CRLF arrives");

    /* trailer bound: one line "X:" + padding + CRLF of exactly HTTP1_TRAILER_MAX bytes */
    memcpy(big, "0\r\nX:", 5);
    memset(big + 5, 't', HTTP1_TRAILER_MAX - 4);
    memcpy(big + 3 + HTTP1_TRAILER_MAX - 2, "\r\n\r\n", 4);
    ok(run_chunked(big, 3 + HTTP1_TRAILER_MAX + 2, 0, 0, &res) && res.rc == 0 &&
           res.used == 3 + HTTP1_TRAILER_MAX + 2,
       "trailer section of exactly %d bytes passes", HTTP1_TRAILER_MAX);
    memset(big + 5, 't', HTTP1_TRAILER_MAX - 3);
    memcpy(big + 3 + HTTP1_TRAILER_MAX - 1, "\r\n\r\n", 4);
    ok(run_chunked(big, 3 + HTTP1_TRAILER_MAX + 3, 0, 0, &res) && res.rc == -1,
       "trailer section one byte longer is refused");
    {
        /* many small trailer lines add up */
        size_t nlines = HTTP1_TRAILER_MAX / 6 + 1, i;
        char *w = big;

        w += sprintf(w, "0\r\n");
        for (i = 0; i < nlines; i++) {
            w += sprintf(w, "a: b\r\n");
        }
        w += sprintf(w, "\r\n");
        ok(run_chunked(big, (size_t)(w - big), 0, 0, &res) && res.rc == -1,
           "many small trailer lines are bounded together");
    }
    free(big);

    /* a larger body: data slices come back in pieces but add up */
    {
        static char body[20000], want[16384];
        size_t i, n = 0;

        for (i = 0; i < sizeof(want); i++) {
            want[i] = (char)('a' + i % 26);
        }
        n += (size_t)sprintf(body + n, "1000\r\n");
        memcpy(body + n, want, 4096);
        n += 4096;
        n += (size_t)sprintf(body + n, "\r\n3000;x=y\r\n");
        memcpy(body + n, want + 4096, 12288);
        n += 12288;
        n += (size_t)sprintf(body + n, "\r\n0\r\n\r\n");
        ok(run_chunked(body, n, 0, 1000, &res) && res.rc == 0 && res.outlen == sizeof(want) &&
               memcmp(res.out, want, sizeof(want)) == 0 && res.used == n,
           "16 KiB body in 1000-byte reads");
        ok(run_chunked(body, n, 0, 0, &res) && res.rc == 0 && res.outlen == sizeof(want),
           "16 KiB body at once");
        ok(run_chunked(body, n - 1, 0, 0, &res) && res.rc == 1,
           "missing final LF: incomplete, not done");
    }
}

int
main(void)
{
    pool_init(&pool);
    test_basic();
    test_smuggling();
    test_request_line();
    test_connection();
    test_limits();
    test_head_length();
    test_chunked();
    pool_deinit(&pool);
    return done_testing();
}
