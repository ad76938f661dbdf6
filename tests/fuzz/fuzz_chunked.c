/*
 * fuzz_chunked.c - signing/chunked.c: the aws-chunked decoder (signed, signed with trailer,
 * unsigned with trailer) and its encoder.
 *
 * Byte 0: bits 0-1 the test, bits 2-3 the mode, bits 4-6 the trailer checksum
 * (none, crc32, crc32c, sha1, sha256, crc64nvme). Byte 1: the size of the pieces the body is
 * fed in. Byte 2: the chunk-size plan. The rest is the data.
 *   raw        the data is a body on the wire (signature chain seeded with AWS's example).
 *              Checks the feed contract: consumed <= given, the payload inside the consumed
 *              bytes, decoded count == payload handed out, errors sticky, done only once.
 *   roundtrip  the data is a payload: framed by our encoder (signed) or by hand (unsigned),
 *              with the trailer checksum when one is picked, then decoded: the same payload,
 *              done, and the trailer checksum as sent.
 *   tamper     as roundtrip, then one byte of the wire form is changed (position and XOR
 *              from the data). In the signed modes a body that still decodes must give back
 *              exactly the original payload: anything else would be a forged chunk.
 */
#include "fuzz.h"

#include "common/status.h"
#include "signing/chunked.h"
#include "signing/sigv4.h"

#define DATE "20130524T000000Z"
#define SCOPE "20130524/us-east-1/s3/aws4_request"
#define SEED "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"

static uint8_t key[32];
static int have_key;

struct buf {
    uint8_t *p;
    size_t len, cap;
};

static void
add(struct buf *b, const void *s, size_t n)
{
    if (n == 0) {
        return;
    }
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        FUZZ_CHECK(b->p != NULL);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void
adds(struct buf *b, const char *s)
{
    add(b, s, strlen(s));
}

/* Decodes WIRE fed in pieces of STEP (each piece its own allocation); payload into OUT. */
static int
decode(enum chunked_mode mode, enum checksum_alg alg, const uint8_t *wire, size_t len, size_t step,
       struct buf *out, char *tvalue)
{
    struct chunked d;
    size_t start = 0;
    int rc = PX_EAGAIN, was_done = 0;
    const char *declared = checksum_header_name(alg);
    struct slice n, v;

    chunked_init(&d, mode, mode == CHUNKED_UNSIGNED_TRAILER ? NULL : key, SLICE_LIT(SEED),
                 SLICE_LIT(DATE), SLICE_LIT(SCOPE), slice_cstr(declared ? declared : ""));
    while (start < len && rc != PX_EINVAL && rc != PX_EBADSIG && rc != PX_ETOOBIG) {
        size_t plen = len - start < step ? len - start : step, off = 0;
        uint8_t *copy = malloc(plen);

        FUZZ_CHECK(copy != NULL);
        memcpy(copy, wire + start, plen);
        while (off < plen) {
            size_t used = (size_t)-1;
            struct slice pl = {NULL, 0};
            uint64_t before = chunked_decoded_bytes(&d);

            rc = chunked_feed(&d, copy + off, plen - off, &used, &pl);
            if (rc == PX_EAGAIN) {
                FUZZ_CHECK(used == plen - off && pl.len == 0);
                break;
            }
            if (rc != PX_OK) {
                FUZZ_CHECK(d.errstr != NULL);
                FUZZ_CHECK(chunked_feed(&d, copy + off, plen - off, &used, &pl) == rc);
                FUZZ_CHECK(!chunked_done(&d));
                break;
            }
            FUZZ_CHECK(used > 0 && used <= plen - off);
            FUZZ_CHECK(fuzz_within(pl.ptr, pl.len, copy + off, used));
            FUZZ_CHECK(chunked_decoded_bytes(&d) == before + pl.len);
            FUZZ_CHECK(!was_done || pl.len == 0);
            was_done = chunked_done(&d);
            add(out, pl.ptr, pl.len);
            off += used;
        }
        free(copy);
        start += plen;
    }
    /* a chunk whose signature fails is counted but its last piece is not handed out */
    FUZZ_CHECK(rc == PX_EBADSIG ? chunked_decoded_bytes(&d) >= out->len
                                : chunked_decoded_bytes(&d) == out->len);
    if (chunked_done(&d)) {
        rc = PX_OK;
        if (chunked_trailer_checksum(&d, &n, &v)) {
            FUZZ_CHECK(declared != NULL && slice_eq(n, slice_cstr(declared)));
            FUZZ_CHECK(v.len < CHECKSUM_BASE64_MAX);
            memcpy(tvalue, v.ptr, v.len);
            tvalue[v.len] = '\0';
        } else {
            FUZZ_CHECK(declared == NULL);
        }
    } else if (rc == PX_OK) {
        rc = PX_EAGAIN;
    }
    chunked_deinit(&d);
    return rc;
}

/* Frames BODY in MODE with chunk sizes from PLAN; *SUM gets the trailer checksum's base64. */
static void
encode(enum chunked_mode mode, enum checksum_alg alg, const uint8_t *body, size_t len,
       unsigned plan, struct buf *wire, char *sum)
{
    struct chunked_signer s;
    struct checksum ck;
    char hdr[CHUNKED_SIGNER_HEADER_MAX];
    size_t pos = 0;
    struct pool p;

    sum[0] = '\0';
    if (alg != CHECKSUM_NONE) {
        FUZZ_CHECK(checksum_init(&ck, alg) == 0);
        checksum_update(&ck, body, len);
        checksum_final_base64(&ck, sum);
        checksum_deinit(&ck);
    }
    FUZZ_CHECK(chunked_signer_init(&s, key, SLICE_LIT(SEED), SLICE_LIT(DATE), SLICE_LIT(SCOPE)) == 0);
    while (pos < len) {
        size_t n = 1 + (plan % 61) * (1 + (plan >> 6));

        if (n > len - pos) {
            n = len - pos;
        }
        if (mode == CHUNKED_UNSIGNED_TRAILER) {
            snprintf(hdr, sizeof(hdr), "%zx\r\n", n);
        } else {
            chunked_signer_chunk(&s, body + pos, n, hdr);
        }
        adds(wire, hdr);
        add(wire, body + pos, n);
        adds(wire, "\r\n");
        pos += n;
        plan = (plan * 37 + 11) & 0xff;
    }
    if (mode == CHUNKED_UNSIGNED_TRAILER) {
        adds(wire, "0\r\n");
    } else {
        chunked_signer_chunk(&s, NULL, 0, hdr);
        adds(wire, hdr);
    }
    if (alg == CHECKSUM_NONE) {
        adds(wire, "\r\n");
    } else if (mode == CHUNKED_SIGNED_TRAILER) {
        pool_init(&p);
        adds(wire, chunked_signer_trailer(&s, &p, slice_cstr(checksum_header_name(alg)),
                                          slice_cstr(sum)));
        pool_deinit(&p);
    } else {
        adds(wire, checksum_header_name(alg));
        adds(wire, ":");
        adds(wire, sum);
        adds(wire, "\r\n\r\n");
    }
    chunked_signer_deinit(&s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    unsigned sel = fuzz_byte(&in), test = sel & 3, m = (sel >> 2) & 3, a = (sel >> 4) & 7;
    size_t step = 1 + fuzz_byte(&in) * 3;
    unsigned plan = fuzz_byte(&in);
    enum chunked_mode mode = m == 1 ? CHUNKED_SIGNED_TRAILER
                             : m == 2 ? CHUNKED_UNSIGNED_TRAILER
                                      : CHUNKED_SIGNED;
    enum checksum_alg alg = mode == CHUNKED_SIGNED ? CHECKSUM_NONE : (enum checksum_alg)(a % 6);
    struct buf wire = {0}, out = {0};
    char sum[CHECKSUM_BASE64_MAX], got[CHECKSUM_BASE64_MAX] = "";
    int rc;

    if (!have_key) {
        sigv4_signing_key(SLICE_LIT("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), SLICE_LIT("20130524"),
                          SLICE_LIT("us-east-1"), SLICE_LIT("s3"), key);
        have_key = 1;
    }
    if (test == 0) {
        decode(mode, (enum checksum_alg)(a % 6), in.p, in.len, step, &out, got);
        free(out.p);
        return 0;
    }
    if (test == 3 && in.len < 3) {
        return 0;
    }
    if (test == 3) {
        /* the last two bytes say where to tamper and how; the rest is the payload */
        size_t where = (size_t)in.p[in.len - 2] * 7;
        uint8_t flip = in.p[in.len - 1] ? in.p[in.len - 1] : 1;

        encode(mode, alg, in.p, in.len - 2, plan, &wire, sum);
        wire.p[where % wire.len] ^= flip;
        rc = decode(mode, alg, wire.p, wire.len, step, &out, got);
        if (rc == PX_OK && mode != CHUNKED_UNSIGNED_TRAILER) {
            FUZZ_CHECK(out.len == in.len - 2 && (out.len == 0 || memcmp(out.p, in.p, out.len) == 0));
        }
    } else {
        encode(mode, alg, in.p, in.len, plan, &wire, sum);
        rc = decode(mode, alg, wire.p, wire.len, step, &out, got);
        FUZZ_CHECK(rc == PX_OK);
        FUZZ_CHECK(out.len == in.len && (out.len == 0 || memcmp(out.p, in.p, out.len) == 0));
        FUZZ_CHECK(strcmp(got, sum) == 0);
    }
    free(wire.p);
    free(out.p);
    return 0;
}
