/*
 * fuzz_http1.c - proxy/http1.c: request heads and the chunked transfer-coding decoder.
 *
 * First byte picks the mode; the rest is the input.
 *   head       http1_head_length() then http1_parse_head(), with the proxy's default limits
 *              or tiny ones. Checks: a head length never exceeds the input and ends in
 *              CRLFCRLF, every shorter prefix just "needs more"; a parsed head has its slices
 *              inside the buffer and consistent framing fields, and the head rebuilt from
 *              what was parsed parses to the same request (our canonical form).
 *   chunked    the bytes as a chunked body, fed in pieces of a fuzzer-chosen size. Checks the
 *              feed contract: consumed <= given, data inside the consumed bytes, total ==
 *              sum of data, nothing consumed once done, errors sticky.
 *   roundtrip  the bytes as a body, framed as chunked with fuzzer-chosen chunk sizes and
 *              extensions and fed in pieces: decodes to the same body and ends exactly at the
 *              end of the framing.
 */
#include "fuzz.h"

#include "common/status.h"
#include "proxy/http1.h"

static const struct http1_limits lim_default = {8192, 65536, 100};
static const struct http1_limits lim_tiny = {40, 200, 4};

static void
append(char **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (n == 0) {
        return;
    }
    if (*len + n > *cap) {
        *cap = (*len + n) * 2 + 256;
        *buf = realloc(*buf, *cap);
        FUZZ_CHECK(*buf != NULL);
    }
    memcpy(*buf + *len, p, n);
    *len += n;
}

static int
slice_same(struct slice a, struct slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void
check_request(const char *buf, size_t len, const struct http1_request *r)
{
    size_t i;

    FUZZ_CHECK(fuzz_within(r->method.ptr, r->method.len, buf, len) && r->method.len > 0);
    FUZZ_CHECK(r->minor == 0 || r->minor == 1);
    FUZZ_CHECK(r->content_length >= -1);
    FUZZ_CHECK(!r->chunked || r->content_length == -1);
    FUZZ_CHECK(r->target.len > 0 && r->target.ptr[0] == '/');
    FUZZ_CHECK(r->host_from_target || fuzz_within(r->host.ptr, r->host.len, buf, len));
    for (i = 0; i < r->nheaders; i++) {
        FUZZ_CHECK(fuzz_within(r->headers[i].name.ptr, r->headers[i].name.len, buf, len));
        FUZZ_CHECK(fuzz_within(r->headers[i].value.ptr, r->headers[i].value.len, buf, len));
        FUZZ_CHECK(r->headers[i].name.len > 0);
    }
}

/* The head as we would write it: request line, one "name: value" per field, CRLF. */
static char *
rebuild(const struct http1_request *r, size_t *outlen)
{
    char *b = NULL, line[32];
    size_t len = 0, cap = 0, i;

    append(&b, &len, &cap, r->method.ptr, r->method.len);
    append(&b, &len, &cap, " ", 1);
    append(&b, &len, &cap, r->target.ptr, r->target.len);
    snprintf(line, sizeof(line), " HTTP/1.%d\r\n", r->minor);
    append(&b, &len, &cap, line, strlen(line));
    for (i = 0; i < r->nheaders; i++) {
        append(&b, &len, &cap, r->headers[i].name.ptr, r->headers[i].name.len);
        append(&b, &len, &cap, ": ", 2);
        append(&b, &len, &cap, r->headers[i].value.ptr, r->headers[i].value.len);
        append(&b, &len, &cap, "\r\n", 2);
    }
    append(&b, &len, &cap, "\r\n", 2);
    *outlen = len;
    return b;
}

static void
fuzz_head(const char *buf, size_t len, const struct http1_limits *lim)
{
    struct http1_error err, err2;
    struct http1_request r, r2;
    struct pool pool, pool2;
    size_t n, n2, i;
    char *again;

    n = http1_head_length(buf, len, lim, &err);
    FUZZ_CHECK(n <= len);
    if (n == 0) {
        FUZZ_CHECK(err.status == 0 || (err.status >= 400 && err.code && err.message));
        return;
    }
    FUZZ_CHECK(err.status == 0);
    FUZZ_CHECK(n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
    /* the same head alone, and every prefix of it (at a few cut points) */
    FUZZ_CHECK(http1_head_length(buf, n, lim, &err2) == n);
    for (i = 1; i <= 3 && i <= n; i++) {
        FUZZ_CHECK(http1_head_length(buf, n - i, lim, &err2) == 0 && err2.status == 0);
    }
    FUZZ_CHECK(http1_head_length(buf, n / 2, lim, &err2) == 0 && err2.status == 0);

    pool_init(&pool);
    if (http1_parse_head(buf, n, lim, &pool, &r, &err) != PX_OK) {
        FUZZ_CHECK(err.status >= 400 && err.code != NULL && err.message != NULL);
        pool_deinit(&pool);
        return;
    }
    check_request(buf, n, &r);
    if (!r.host_from_target) {
        again = rebuild(&r, &n2);
        FUZZ_CHECK(http1_head_length(again, n2, &lim_default, &err2) == n2);
        pool_init(&pool2);
        FUZZ_CHECK(http1_parse_head(again, n2, &lim_default, &pool2, &r2, &err2) == PX_OK);
        FUZZ_CHECK(slice_same(r.method, r2.method) && slice_same(r.target, r2.target));
        FUZZ_CHECK(r.minor == r2.minor && r.nheaders == r2.nheaders);
        FUZZ_CHECK(r.content_length == r2.content_length && r.chunked == r2.chunked);
        FUZZ_CHECK(r.keep_alive == r2.keep_alive && r.expect_continue == r2.expect_continue);
        FUZZ_CHECK(slice_same(r.host, r2.host) && !r2.host_from_target);
        for (i = 0; i < r.nheaders; i++) {
            FUZZ_CHECK(slice_same(r.headers[i].name, r2.headers[i].name));
            FUZZ_CHECK(slice_same(r.headers[i].value, r2.headers[i].value));
        }
        pool_deinit(&pool2);
        free(again);
    }
    pool_deinit(&pool);
}

/* Feeds BUF in pieces of STEP bytes; returns the last status. Checks the feed contract. */
static int
feed_all(struct http1_chunked *c, const char *buf, size_t len, size_t step, char **out,
         size_t *outlen, size_t *used)
{
    size_t pos = 0, cap = 0, avail = 0;
    int rc = PX_EAGAIN;

    *outlen = 0;
    while (pos < len) {
        size_t consumed = (size_t)-1;
        struct slice data = {NULL, 0};
        uint64_t before = c->total;

        if (avail < pos + 1) {
            avail = pos + step < len ? pos + step : len;
        }
        rc = http1_chunked_feed(c, buf + pos, avail - pos, &consumed, &data);
        if (rc == PX_EINVAL) {
            FUZZ_CHECK(c->err != NULL);
            /* sticky */
            FUZZ_CHECK(http1_chunked_feed(c, buf + pos, avail - pos, &consumed, &data) == PX_EINVAL);
            break;
        }
        FUZZ_CHECK(rc == PX_OK || rc == PX_EAGAIN);
        FUZZ_CHECK(consumed <= avail - pos);
        if (rc == PX_EAGAIN) {
            FUZZ_CHECK(consumed == avail - pos && data.len == 0);
        }
        FUZZ_CHECK(fuzz_within(data.ptr, data.len, buf + pos, consumed));
        FUZZ_CHECK(c->total == before + data.len);
        append(out, outlen, &cap, data.ptr, data.len);
        pos += consumed;
        if (http1_chunked_done(c)) {
            size_t again = 1;

            FUZZ_CHECK(http1_chunked_feed(c, buf + pos, len - pos, &again, &data) == PX_OK);
            FUZZ_CHECK(again == 0 && data.len == 0);
            break;
        }
        if (consumed == 0) {
            FUZZ_CHECK(avail - pos == 0);
        }
        if (pos == avail && avail == len) {
            break;
        }
    }
    *used = pos;
    return rc;
}

static void
fuzz_chunked(const char *buf, size_t len, size_t step)
{
    struct http1_chunked c;
    char *out = NULL;
    size_t outlen, used;

    http1_chunked_init(&c);
    feed_all(&c, buf, len, step, &out, &outlen, &used);
    FUZZ_CHECK(used <= len && outlen <= used && c.total == outlen);
    free(out);
}

static void
fuzz_roundtrip(struct fuzz_in *in, size_t step)
{
    char *enc = NULL, *out = NULL, line[64];
    size_t enclen = 0, cap = 0, outlen, used, pos = 0;
    const char *body, *last;
    size_t bodylen;
    unsigned plan = fuzz_byte(in), ext = fuzz_byte(in);
    struct http1_chunked c;

    body = (const char *)in->p;
    bodylen = in->len;
    while (pos < bodylen) {
        size_t n = 1 + (plan % 97) * (1 + (ext & 3));

        if (n > bodylen - pos) {
            n = bodylen - pos;
        }
        snprintf(line, sizeof(line), (ext & 1) ? "%zX;ext=%u\r\n" : "%zx\r\n", n, plan);
        append(&enc, &enclen, &cap, line, strlen(line));
        append(&enc, &enclen, &cap, body + pos, n);
        append(&enc, &enclen, &cap, "\r\n", 2);
        pos += n;
        plan = plan * 31 + 7;
    }
    last = (ext & 2) ? "000\r\nx-trailer: v\r\n\r\n" : "0\r\n\r\n";
    append(&enc, &enclen, &cap, last, strlen(last));
    append(&enc, &enclen, &cap, "GET / HTTP/1.1\r\n", 16); /* the next request: not consumed */

    http1_chunked_init(&c);
    FUZZ_CHECK(feed_all(&c, enc, enclen, step, &out, &outlen, &used) == PX_OK);
    FUZZ_CHECK(http1_chunked_done(&c));
    FUZZ_CHECK(used == enclen - 16);
    FUZZ_CHECK(outlen == bodylen && (bodylen == 0 || memcmp(out, body, bodylen) == 0));
    free(enc);
    free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned mode = fuzz_byte(&in);
    size_t step;

    switch (mode % 4) {
    case 0:
        fuzz_head((const char *)in.p, in.len, &lim_default);
        break;
    case 1:
        fuzz_head((const char *)in.p, in.len, &lim_tiny);
        break;
    case 2:
        step = 1 + fuzz_byte(&in) % 64;
        fuzz_chunked((const char *)in.p, in.len, step);
        break;
    default:
        step = 1 + fuzz_byte(&in) % 64;
        fuzz_roundtrip(&in, step);
        break;
    }
    return 0;
}
