/*
 * Unit tests for signing/chunked.c: AWS's published chunked-upload examples (plain and with a
 * signed trailer) decoded whole, at every split position, byte by byte and in random pieces;
 * every framing error; unsigned-trailer bodies with each checksum; our encoder.
 */
#include "signing/chunked.c"

#include <stdlib.h>

#include "test.h"

#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define DATE "20130524T000000Z"
#define SCOPE "20130524/us-east-1/s3/aws4_request"

/* AWS "Example: PUT Object" of sigv4-streaming */
#define SEED "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define SIG1 "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
#define SIG2 "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
#define SIG3 "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
/* the same upload with a crc32c trailer (sigv4-streaming-trailers) */
#define TSEED "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
#define TSIG1 "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"
#define TSIG2 "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
#define TSIG3 "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
#define TTRAILER_SIG "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"

static uint8_t key[32];

struct buf {
    uint8_t *p;  /* owned */
    size_t len;  /* used */
    size_t cap;  /* allocated */
};

static void
add(struct buf *b, const void *s, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void
adds(struct buf *b, const char *s)
{
    add(b, s, strlen(s));
}

static void
addrep(struct buf *b, char c, size_t n)
{
    while (n--) {
        add(b, &c, 1);
    }
}

/* Decoder parameters for one test body. */
struct cfg {
    enum chunked_mode mode;
    const char *seed;
    const char *trailer; /* x-amz-trailer */
};

static const struct cfg aws_plain = {CHUNKED_SIGNED, SEED, ""};
static const struct cfg aws_trailer = {CHUNKED_SIGNED_TRAILER, TSEED, "x-amz-checksum-crc32c"};

struct result {
    int rc;           /* PX_OK when done, else the failing status or PX_EAGAIN when cut short */
    int done;         /* chunked_done() at the end */
    int contract;     /* 1 while every return honoured the consumed/payload contract */
    int mismatch;     /* d.checksum_mismatch */
    const char *why;  /* d.errstr */
    struct buf out;   /* payload reassembled */
    char tname[64];   /* trailer checksum name, if any */
    char tvalue[64];  /* and value */
};

/*
 * Feeds BODY cut at the NCUTS ascending positions CUTS (each piece its own buffer, so a slice
 * pointing past its piece would be caught by ASan), reassembling the payload.
 */
static void
run(const struct cfg *c, const uint8_t *body, size_t len, const size_t *cuts, size_t ncuts,
    struct result *r)
{
    struct chunked d;
    size_t piece, start = 0;
    struct slice n, v;

    memset(r, 0, sizeof(*r));
    r->contract = 1;
    r->rc = PX_EAGAIN;
    chunked_init(&d, c->mode, c->mode == CHUNKED_UNSIGNED_TRAILER ? NULL : key,
                 slice_cstr(c->seed), SLICE_LIT(DATE), SLICE_LIT(SCOPE), slice_cstr(c->trailer));
    for (piece = 0; piece <= ncuts; piece++) {
        size_t end = piece < ncuts ? cuts[piece] : len;
        size_t plen = end - start, off = 0;
        uint8_t *copy = malloc(plen ? plen : 1);

        memcpy(copy, body + start, plen);
        while (off < plen) {
            size_t used = 12345;
            struct slice pl;
            int rc = chunked_feed(&d, copy + off, plen - off, &used, &pl);

            if (rc == PX_EAGAIN) {
                r->contract &= used == plen - off && pl.len == 0;
                off = plen;
                break;
            }
            if (rc != PX_OK) {
                r->rc = rc;
                goto out;
            }
            r->contract &= used > 0 && used <= plen - off;
            r->contract &= pl.len == 0 || ((const uint8_t *)pl.ptr >= copy + off &&
                                           (const uint8_t *)pl.ptr + pl.len <= copy + off + used);
            add(&r->out, pl.ptr, pl.len);
            off += used;
        }
        free(copy);
        copy = NULL;
        start = end;
        continue;
    out:
        free(copy);
        break;
    }
    r->done = chunked_done(&d);
    if (r->rc == PX_EAGAIN && r->done) {
        r->rc = PX_OK;
    }
    r->mismatch = d.checksum_mismatch;
    r->why = d.errstr;
    r->contract &= chunked_decoded_bytes(&d) == r->out.len;
    if (chunked_trailer_checksum(&d, &n, &v)) {
        snprintf(r->tname, sizeof(r->tname), "%.*s", SLICE_ARGS(n));
        snprintf(r->tvalue, sizeof(r->tvalue), "%.*s", SLICE_ARGS(v));
    }
    chunked_deinit(&d);
}

static void
run1(const struct cfg *c, const struct buf *b, struct result *r)
{
    run(c, b->p, b->len, NULL, 0, r);
}

static int
all_a(const struct buf *b, size_t n)
{
    static uint8_t a[66560];

    if (a[0] != 'a') {
        memset(a, 'a', sizeof(a));
    }
    return b->len == n && n <= sizeof(a) && memcmp(b->p, a, n) == 0;
}

static void
aws_body(struct buf *b, int trailer)
{
    memset(b, 0, sizeof(*b));
    adds(b, trailer ? "10000;chunk-signature=" TSIG1 "\r\n" : "10000;chunk-signature=" SIG1 "\r\n");
    addrep(b, 'a', 65536);
    adds(b, trailer ? "\r\n400;chunk-signature=" TSIG2 "\r\n" : "\r\n400;chunk-signature=" SIG2 "\r\n");
    addrep(b, 'a', 1024);
    if (trailer) {
        adds(b, "\r\n0;chunk-signature=" TSIG3 "\r\n"
                "x-amz-checksum-crc32c:sOO8/Q==\r\n"
                "x-amz-trailer-signature:" TTRAILER_SIG "\r\n\r\n");
    } else {
        adds(b, "\r\n0;chunk-signature=" SIG3 "\r\n\r\n");
    }
}

/* Runs a body given as a C string (framing tests). */
static int
run_str(const struct cfg *c, const char *body, struct result *r)
{
    run(c, (const uint8_t *)body, strlen(body), NULL, 0, r);
    free(r->out.p);
    r->out.p = NULL;
    return r->rc;
}

static void
test_aws_plain(void)
{
    struct buf b, bad;
    struct result r;
    size_t i, cut[8];
    int all_ok;
    char hash[65], sig[65];

    /* the signature chain on its own */
    memset(hash, 0, sizeof(hash));
    aws_body(&b, 0);
    sigv4_sha256_hex(b.p + 88, 65536, hash);
    ok_str(hash, "bf718b6f653bebc184e1479f1935b8da974d701b893afcf49e701f3e2f9f9c5a",
           "AWS example: hash of the first chunk");
    chunked_chunk_signature(key, SLICE_LIT(DATE), SLICE_LIT(SCOPE), SLICE_LIT(SEED),
                            slice_make(hash, 64), sig);
    ok_str(sig, SIG1, "AWS example: first chunk signature");

    ok(b.len == 66824, "AWS example body is the documented Content-Length 66824 (%zu)", b.len);
    run1(&aws_plain, &b, &r);
    ok(r.rc == PX_OK && r.done && r.contract, "AWS example decodes and verifies");
    ok(all_a(&r.out, 66560), "payload is 66560 bytes of 'a'");
    ok(r.tname[0] == '\0', "no trailer checksum");
    free(r.out.p);

    all_ok = 1;
    for (i = 0; i <= b.len; i++) {
        run(&aws_plain, b.p, b.len, &i, 1, &r);
        all_ok &= r.rc == PX_OK && r.done && r.contract && all_a(&r.out, 66560);
        free(r.out.p);
        if (!all_ok) {
            printf("# split at %zu failed: rc %d (%s)\n", i, r.rc, r.why ? r.why : "");
            break;
        }
    }
    ok(all_ok, "split at every one of %zu positions", b.len + 1);

    {
        size_t *every = malloc(b.len * sizeof(size_t));

        for (i = 0; i < b.len; i++) {
            every[i] = i + 1;
        }
        run(&aws_plain, b.p, b.len, every, b.len - 1, &r);
        ok(r.rc == PX_OK && r.done && r.contract && all_a(&r.out, 66560), "byte by byte");
        free(r.out.p);
        free(every);
    }

    srand(42);
    all_ok = 1;
    for (i = 0; i < 300; i++) {
        size_t n = 1 + (size_t)rand() % 8, j, k;

        for (j = 0; j < n; j++) {
            cut[j] = (size_t)rand() % (b.len + 1);
        }
        for (j = 1; j < n; j++) { /* insertion sort */
            for (k = j; k > 0 && cut[k - 1] > cut[k]; k--) {
                size_t t = cut[k];

                cut[k] = cut[k - 1];
                cut[k - 1] = t;
            }
        }
        run(&aws_plain, b.p, b.len, cut, n, &r);
        all_ok &= r.rc == PX_OK && r.done && r.contract && all_a(&r.out, 66560);
        free(r.out.p);
    }
    ok(all_ok, "300 random multi-splits");

    /* tampering */
    bad.p = malloc(b.len);
    bad.len = bad.cap = b.len;
#define TAMPER(pos, byte, expect, what)                                                            \
    do {                                                                                           \
        memcpy(bad.p, b.p, b.len);                                                                 \
        bad.p[pos] = (uint8_t)(byte);                                                              \
        run1(&aws_plain, &bad, &r);                                                                \
        ok(r.rc == (expect) && !r.done && !r.mismatch, "%s -> %d (%s)", what, r.rc,                \
           r.why ? r.why : "");                                                                    \
        free(r.out.p);                                                                             \
    } while (0)
    TAMPER(88 + 1000, 'b', PX_EBADSIG, "flipped byte in chunk 1 data");
    TAMPER(88 + 65535, 'b', PX_EBADSIG, "flipped last byte of chunk 1");
    TAMPER(88 + 65536 + 2 + 86 + 5, 'b', PX_EBADSIG, "flipped byte in chunk 2 data");
    TAMPER(22 + 10, SIG1[10] == '0' ? '1' : '0', PX_EBADSIG, "flipped hex in chunk 1 signature");
    TAMPER(b.len - 4 - 64 + 3, SIG3[3] == '0' ? '1' : '0', PX_EBADSIG,
           "flipped hex in the final chunk signature");
    TAMPER(0, 'g', PX_EINVAL, "bad hex size");
    TAMPER(5, ':', PX_EINVAL, "bad extension separator");
    TAMPER(88 + 65536, 'x', PX_EINVAL, "no CR after chunk data");
    TAMPER(88 + 65537, 'x', PX_EINVAL, "no LF after chunk data");
    TAMPER(86, '\n', PX_EINVAL, "chunk header line ending in LF LF");
    TAMPER(b.len - 2, 'x', PX_EINVAL, "final CRLF replaced by a trailer in a no-trailer body");
#undef TAMPER
    /* a payload byte handed out before a failed check never includes the chunk's last byte */
    memcpy(bad.p, b.p, b.len);
    bad.p[88 + 65535] = 'b';
    run1(&aws_plain, &bad, &r);
    ok(r.rc == PX_EBADSIG && r.out.len == 0, "nothing of a bad single-feed chunk is handed out");
    free(r.out.p);

    /* truncation at many points: never done, never an error */
    all_ok = 1;
    for (i = 0; i < b.len; i += (i < 200 || b.len - i < 200) ? 1 : 997) {
        run(&aws_plain, b.p, i, NULL, 0, &r);
        all_ok &= r.rc == PX_EAGAIN && !r.done && r.contract;
        free(r.out.p);
    }
    ok(all_ok, "every truncated body stays incomplete (EAGAIN, not done)");

    /* chunk 2 dropped: the chain breaks at the final chunk */
    free(bad.p);
    memset(&bad, 0, sizeof(bad));
    adds(&bad, "10000;chunk-signature=" SIG1 "\r\n");
    addrep(&bad, 'a', 65536);
    adds(&bad, "\r\n0;chunk-signature=" SIG3 "\r\n\r\n");
    run1(&aws_plain, &bad, &r);
    ok(r.rc == PX_EBADSIG, "dropped chunk breaks the signature chain");
    free(r.out.p);
    free(bad.p);

    /* wrong seed (e.g. another request's) */
    {
        struct cfg other = {CHUNKED_SIGNED, SIG1, ""};

        run1(&other, &b, &r);
        ok(r.rc == PX_EBADSIG, "wrong seed signature");
        free(r.out.p);
    }

    /* bytes after the end, and a sticky error */
    {
        struct chunked d;
        size_t used;
        struct slice pl;
        int rc;

        chunked_init(&d, CHUNKED_SIGNED, key, SLICE_LIT(SEED), SLICE_LIT(DATE), SLICE_LIT(SCOPE),
                     SLICE_LIT(""));
        add(&b, "X", 1);
        do {
            rc = chunked_feed(&d, b.p, b.len, &used, &pl);
            memmove(b.p, b.p + used, b.len - used);
            b.len -= used;
        } while (rc == PX_OK && !chunked_done(&d));
        ok(rc == PX_OK && chunked_done(&d) && b.len == 1, "stops right after the final CRLF");
        ok(chunked_feed(&d, b.p, 0, &used, &pl) == PX_OK && used == 0, "empty feed after done");
        ok(chunked_feed(&d, b.p, 1, &used, &pl) == PX_EINVAL && !chunked_done(&d),
           "data after the final chunk refused");
        ok(chunked_feed(&d, b.p, 0, &used, &pl) == PX_EINVAL, "errors are sticky");
        chunked_deinit(&d);
    }
    free(b.p);
}

static void
test_aws_trailer(void)
{
    struct buf b;
    struct result r;
    size_t i, step;
    int all_ok;
    struct chunked_signer s;
    char hdr[CHUNKED_SIGNER_HEADER_MAX], *tr;
    struct pool p;

    aws_body(&b, 1);
    run1(&aws_trailer, &b, &r);
    ok(r.rc == PX_OK && r.done && r.contract && all_a(&r.out, 66560),
       "AWS signed-trailer example decodes and verifies (%s)", r.why ? r.why : "ok");
    ok(strcmp(r.tname, "x-amz-checksum-crc32c") == 0 && strcmp(r.tvalue, "sOO8/Q==") == 0,
       "trailer checksum reported");
    free(r.out.p);

    all_ok = 1;
    for (i = 0; i <= b.len; i += step) {
        step = (i < 300 || b.len - i < 400 || (i > 65500 && i < 65800)) ? 1 : 101;
        run(&aws_trailer, b.p, b.len, &i, 1, &r);
        all_ok &= r.rc == PX_OK && r.done && r.contract && all_a(&r.out, 66560);
        free(r.out.p);
    }
    ok(all_ok, "signed-trailer example split at every framing position");

    /* our encoder reproduces the documented body byte for byte */
    pool_init(&p);
    chunked_signer_init(&s, key, SLICE_LIT(TSEED), SLICE_LIT(DATE), SLICE_LIT(SCOPE));
    chunked_signer_chunk(&s, b.p + 88, 65536, hdr);
    ok_str(hdr, "10000;chunk-signature=" TSIG1 "\r\n", "encoder: first chunk header");
    chunked_signer_chunk(&s, b.p + 88, 1024, hdr);
    ok_str(hdr, "400;chunk-signature=" TSIG2 "\r\n", "encoder: second chunk header");
    chunked_signer_chunk(&s, NULL, 0, hdr);
    ok_str(hdr, "0;chunk-signature=" TSIG3 "\r\n", "encoder: final chunk header");
    tr = chunked_signer_trailer(&s, &p, SLICE_LIT("X-Amz-Checksum-Crc32c"), SLICE_LIT("sOO8/Q=="));
    ok_str(tr, "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" TTRAILER_SIG "\r\n\r\n",
           "encoder: signed trailer (canonical form 'name:value\\n')");
    chunked_signer_deinit(&s);
    pool_deinit(&p);

    /* tampered trailer signature */
    b.p[b.len - 10] = b.p[b.len - 10] == '0' ? '1' : '0';
    run1(&aws_trailer, &b, &r);
    ok(r.rc == PX_EBADSIG && !r.mismatch, "flipped trailer signature -> EBADSIG, not BadDigest");
    free(r.out.p);
    free(b.p);
}

/* A signed-trailer body we sign ourselves: N bytes of pattern in chunks of CHUNK, with the
 * given trailer value (or the right one when VALUE is NULL). */
static void
signed_trailer_body(struct buf *b, size_t n, size_t chunk, enum checksum_alg alg,
                    const char *value, int with_sig)
{
    struct chunked_signer s;
    struct checksum ck;
    char hdr[CHUNKED_SIGNER_HEADER_MAX], right[CHECKSUM_BASE64_MAX];
    uint8_t *data = malloc(n + 1);
    size_t off;
    struct pool p;
    char *tr;

    for (off = 0; off < n; off++) {
        data[off] = (uint8_t)(off * 31 + 7);
    }
    checksum_init(&ck, alg);
    checksum_update(&ck, data, n);
    checksum_final_base64(&ck, right);
    checksum_deinit(&ck);
    memset(b, 0, sizeof(*b));
    pool_init(&p);
    chunked_signer_init(&s, key, SLICE_LIT(SEED), SLICE_LIT(DATE), SLICE_LIT(SCOPE));
    for (off = 0; off < n; off += chunk) {
        size_t len = n - off < chunk ? n - off : chunk;

        add(b, hdr, chunked_signer_chunk(&s, data + off, len, hdr));
        add(b, data + off, len);
        adds(b, "\r\n");
    }
    chunked_signer_chunk(&s, NULL, 0, hdr);
    adds(b, hdr);
    tr = chunked_signer_trailer(&s, &p, slice_cstr(checksum_header_name(alg)),
                                slice_cstr(value ? value : right));
    if (!with_sig) {
        *strstr(tr, "x-amz-trailer-signature") = '\0';
        adds(b, tr);
        adds(b, "\r\n");
    } else {
        adds(b, tr);
    }
    pool_deinit(&p);
    chunked_signer_deinit(&s);
    free(data);
}

static void
test_signed_trailer_own(void)
{
    struct cfg c = {CHUNKED_SIGNED_TRAILER, SEED, "x-amz-checksum-crc32"};
    struct buf b;
    struct result r;
    size_t i;
    int all_ok = 1;

    signed_trailer_body(&b, 20000, 8192, CHECKSUM_CRC32, NULL, 1);
    for (i = 0; i <= b.len; i++) {
        run(&c, b.p, b.len, &i, 1, &r);
        all_ok &= r.rc == PX_OK && r.done && r.contract && r.out.len == 20000;
        free(r.out.p);
    }
    ok(all_ok, "own signed crc32 trailer body, split at every position");
    free(b.p);

    signed_trailer_body(&b, 20000, 8192, CHECKSUM_CRC32, "AAAAAA==", 1);
    run1(&c, &b, &r);
    ok(r.rc == PX_EBADSIG && r.mismatch, "validly signed but wrong checksum -> BadDigest");
    free(r.out.p);
    free(b.p);

    signed_trailer_body(&b, 100, 64, CHECKSUM_CRC32, NULL, 0);
    run1(&c, &b, &r);
    ok(r.rc == PX_EINVAL, "missing x-amz-trailer-signature (%s)", r.why ? r.why : "");
    free(r.out.p);
    free(b.p);

    signed_trailer_body(&b, 100, 64, CHECKSUM_SHA256, NULL, 1);
    run1(&c, &b, &r);
    ok(r.rc == PX_EINVAL, "trailer carries another checksum than x-amz-trailer declared");
    free(r.out.p);
    c.trailer = "x-amz-checksum-sha256";
    run1(&c, &b, &r);
    ok(r.rc == PX_OK && r.done && strcmp(r.tname, "x-amz-checksum-sha256") == 0,
       "sha256 signed trailer");
    free(r.out.p);
    free(b.p);

    /* -TRAILER mode without a trailer: final chunk then CRLF */
    {
        struct chunked_signer s;
        char hdr[CHUNKED_SIGNER_HEADER_MAX];
        struct cfg none = {CHUNKED_SIGNED_TRAILER, SEED, ""};

        memset(&b, 0, sizeof(b));
        chunked_signer_init(&s, key, SLICE_LIT(SEED), SLICE_LIT(DATE), SLICE_LIT(SCOPE));
        add(&b, hdr, chunked_signer_chunk(&s, "abc", 3, hdr));
        adds(&b, "abc\r\n");
        add(&b, hdr, chunked_signer_chunk(&s, NULL, 0, hdr));
        adds(&b, "\r\n");
        run1(&none, &b, &r);
        ok(r.rc == PX_OK && r.done && r.out.len == 3,
           "signed-trailer mode accepts '0;chunk-signature=...\\r\\n\\r\\n' with no trailer");
        free(r.out.p);
        run1(&aws_plain, &b, &r);
        ok(r.rc == PX_OK && r.done, "the same body in plain signed mode");
        free(r.out.p);
        chunked_signer_deinit(&s);
        free(b.p);
    }
}

static void
test_unsigned_trailer(void)
{
    static const struct {
        const char *header, *value; /* of "123456789" (published check values, hashlib) */
    } v[] = {
        {"x-amz-checksum-crc32", "y/Q5Jg=="},
        {"x-amz-checksum-crc32c", "4waSgw=="},
        {"x-amz-checksum-sha1", "98O8HYCOBHMq32eZZczDTKeuNEE="},
        {"x-amz-checksum-sha256", "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU="},
        {"x-amz-checksum-crc64nvme", "rosUhgp5mIg="},
    };
    struct cfg c = {CHUNKED_UNSIGNED_TRAILER, "", ""};
    struct result r;
    char body[512];
    size_t i, j, len;
    int all_ok;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        c.trailer = v[i].header;
        len = (size_t)snprintf(body, sizeof(body), "4\r\n1234\r\n5\r\n56789\r\n0\r\n%s:%s\r\n\r\n",
                               v[i].header, v[i].value);
        run_str(&c, body, &r);
        ok(r.rc == PX_OK && r.done && strcmp(r.tvalue, v[i].value) == 0,
           "unsigned trailer %s", v[i].header);
        all_ok = 1;
        for (j = 0; j <= len; j++) {
            run(&c, (const uint8_t *)body, len, &j, 1, &r);
            all_ok &= r.rc == PX_OK && r.done && r.out.len == 9 && memcmp(r.out.p, "123456789", 9) == 0;
            free(r.out.p);
        }
        ok(all_ok, "unsigned trailer %s split at every position", v[i].header);
        snprintf(body, sizeof(body), "4\r\n1234\r\n5\r\n56780\r\n0\r\n%s:%s\r\n\r\n", v[i].header,
                 v[i].value);
        ok(run_str(&c, body, &r) == PX_EBADSIG && r.mismatch, "%s mismatch -> BadDigest",
           v[i].header);
    }

    /* a bigger body with a crc32 computed by python's zlib */
    {
        struct buf b;
        uint8_t *data = malloc(100000);
        char line[32];

        memset(&b, 0, sizeof(b));
        for (i = 0; i < 100000; i++) {
            data[i] = (uint8_t)((i * 7 + 3) % 251);
        }
        for (i = 0; i < 100000; i += 8192) {
            size_t n = 100000 - i < 8192 ? 100000 - i : 8192;

            snprintf(line, sizeof(line), "%zX\r\n", n); /* uppercase hex sizes too */
            adds(&b, line);
            add(&b, data + i, n);
            adds(&b, "\r\n");
        }
        adds(&b, "0\r\nx-amz-checksum-crc32:Q7/utA==\r\n\r\n");
        c.trailer = "x-amz-checksum-crc32";
        run1(&c, &b, &r);
        ok(r.rc == PX_OK && r.done && r.out.len == 100000 && memcmp(r.out.p, data, 100000) == 0,
           "100000-byte body, crc32 from python zlib");
        free(r.out.p);
        free(b.p);
        free(data);
    }

    c.trailer = "x-amz-checksum-crc32";
    ok(run_str(&c, "3\r\nabc\r\n0\r\nX-Amz-Checksum-CRC32 : NSRBwg== \r\n\r\n", &r) == PX_OK &&
           strcmp(r.tname, "x-amz-checksum-crc32") == 0 && strcmp(r.tvalue, "NSRBwg==") == 0,
       "trailer name in any case, spaces trimmed");
    ok(run_str(&c, "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\n\n", &r) == PX_OK,
       "trailer lines ending in a bare LF tolerated");
    ok(run_str(&c, "3\r\nabc\r\n0\r\n\r\n", &r) == PX_EINVAL, "declared trailer missing");
    ok(run_str(&c, "3\r\nabc\r\n0\r\nx-amz-checksum-crc32c:NSRBwg==\r\n\r\n", &r) == PX_EINVAL,
       "other checksum than declared");
    ok(run_str(&c,
               "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n",
               &r) == PX_EINVAL,
       "checksum trailer repeated");
    ok(run_str(&c, "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\nx-amz-meta-a:b\r\n\r\n", &r) ==
           PX_EINVAL,
       "undeclared extra trailer");
    ok(run_str(&c,
               "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\nx-amz-trailer-signature:" SIG1
               "\r\n\r\n",
               &r) == PX_EINVAL,
       "trailer signature in unsigned mode");
    ok(run_str(&c, "3\r\nabc\r\n0\r\nno colon here\r\n\r\n", &r) == PX_EINVAL, "trailer without ':'");
    ok(run_str(&c, "3;chunk-signature=" SIG1 "\r\nabc\r\n0\r\n\r\n", &r) == PX_EINVAL,
       "signed chunk header in unsigned mode");
    ok(run_str(&c, "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n", &r) == PX_EAGAIN && !r.done,
       "no final empty line: incomplete");
    {
        struct buf b;

        memset(&b, 0, sizeof(b));
        adds(&b, "3\r\nabc\r\n0\r\n");
        for (i = 0; i < 1000; i++) {
            adds(&b, "x-amz-meta-filler:0123456789\r\n");
        }
        adds(&b, "\r\n");
        run1(&c, &b, &r);
        ok(r.rc == PX_ETOOBIG, "trailer over 16 KiB -> ETOOBIG");
        free(r.out.p);
        free(b.p);
    }
    c.trailer = "";
    ok(run_str(&c, "3\r\nabc\r\n0\r\n\r\n", &r) == PX_OK && r.done && r.tname[0] == '\0',
       "no trailer declared, none sent");
    ok(run_str(&c, "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n", &r) == PX_EINVAL,
       "trailer sent without x-amz-trailer");
    c.trailer = "x-amz-meta-foo";
    ok(run_str(&c, "3\r\nabc\r\n0\r\n\r\n", &r) == PX_EINVAL, "x-amz-trailer not a checksum");
}

static void
test_framing(void)
{
    struct cfg c = {CHUNKED_UNSIGNED_TRAILER, "", ""};
    struct result r;
    struct buf b;
    size_t i;

    ok(run_str(&c, "0000000000000000003\r\nabc\r\n0\r\n\r\n", &r) == PX_OK && r.done,
       "leading zeros in the size");
    ok(run_str(&c, "10000000000000000\r\n", &r) == PX_EINVAL, "size over 64 bits");
    ok(run_str(&c, "\r\nabc\r\n0\r\n\r\n", &r) == PX_EINVAL, "empty size line");
    ok(run_str(&c, "-3\r\nabc\r\n0\r\n\r\n", &r) == PX_EINVAL, "negative size");
    ok(run_str(&c, "3 \r\nabc\r\n0\r\n\r\n", &r) == PX_EINVAL, "space after the size");
    ok(run_str(&c, "3\nabc\r\n0\r\n\r\n", &r) == PX_EINVAL, "size line ending in bare LF");
    ok(run_str(&c, "4\r\nabc\r\n0\r\n\r\n", &r) == PX_EINVAL, "size larger than the data");
    ok(run_str(&c, "2\r\nabc\r\n0\r\n\r\n", &r) == PX_EINVAL, "size smaller than the data");
    ok(run_str(&c, "3\r\nabc0\r\n\r\n", &r) == PX_EINVAL, "missing CRLF after data");

    memset(&b, 0, sizeof(b));
    adds(&b, "3;");
    addrep(&b, 'x', 5000);
    adds(&b, "\r\nabc\r\n0\r\n\r\n");
    run1(&c, &b, &r);
    ok(r.rc == PX_ETOOBIG, "chunk header line over 4 KiB -> ETOOBIG");
    free(r.out.p);
    i = 1000;
    run(&c, b.p, b.len, &i, 1, &r);
    ok(r.rc == PX_ETOOBIG, "... also when it arrives in pieces");
    free(r.out.p);
    free(b.p);

    ok(run_str(&aws_plain, "10000\r\n", &r) == PX_EINVAL, "signed mode needs chunk-signature");
    ok(run_str(&aws_plain, "10000;chunk-signature=abc\r\n", &r) == PX_EINVAL, "short signature");
    ok(run_str(&aws_plain, "10000;chunk-signature=" SIG1 ";x=y\r\n", &r) == PX_EINVAL,
       "extra extension");
    {
        char up[200];

        snprintf(up, sizeof(up), "0;chunk-signature=%s\r\n\r\n", SIG1);
        for (i = strlen("0;chunk-signature="); up[i]; i++) {
            up[i] = (char)toupper((unsigned char)up[i]);
        }
        ok(run_str(&aws_plain, up, &r) == PX_EBADSIG, "uppercase signature parses, then mismatches");
    }

    /* bad arguments surface on the first feed */
    {
        struct cfg short_seed = {CHUNKED_SIGNED, "4f232c43", ""};
        struct cfg plain_trailer = {CHUNKED_SIGNED, SEED, "x-amz-checksum-crc32"};
        struct chunked d;
        size_t used;
        struct slice pl;

        ok(run_str(&short_seed, "0;chunk-signature=" SIG3 "\r\n\r\n", &r) == PX_EINVAL,
           "seed signature not 64 hex");
        ok(run_str(&plain_trailer, "0;chunk-signature=" SIG3 "\r\n\r\n", &r) == PX_EINVAL,
           "x-amz-trailer without a -TRAILER mode");
        chunked_init(&d, CHUNKED_SIGNED, NULL, SLICE_LIT(SEED), SLICE_LIT(DATE), SLICE_LIT(SCOPE),
                     SLICE_LIT(""));
        ok(chunked_feed(&d, (const uint8_t *)"0", 1, &used, &pl) == PX_EINVAL && d.errstr,
           "signed mode without a key");
        chunked_deinit(&d);
        chunked_deinit(&d);
    }
}

int
main(void)
{
    sigv4_signing_key(SLICE_LIT(SK), SLICE_LIT("20130524"), SLICE_LIT("us-east-1"), SLICE_LIT("s3"),
                      key);
    test_aws_plain();
    test_aws_trailer();
    test_signed_trailer_own();
    test_unsigned_trailer();
    test_framing();
    return done_testing();
}
