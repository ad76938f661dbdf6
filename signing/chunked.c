/*
 * chunked.c - aws-chunked decoder: a byte-driven state machine that hands out chunk data as
 * slices of the caller's buffer, checks each chunk signature when its last byte arrives and
 * the trailer (signature and checksum) at the end.
 *
 *   SIZE --(n>0)--> DATA --> DATA_CR --> DATA_LF --> SIZE ...
 *     \--(n=0, signature checked)--> TRAILER --(empty line, trailer checked)--> DONE
 */
#include "chunked.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/status.h"
#include "common/xalloc.h"
#include "sigv4.h"

enum {
    ST_SIZE,    /* collecting a chunk header line */
    ST_DATA,    /* inside a chunk's data */
    ST_DATA_CR, /* expecting the CR that ends a chunk's data */
    ST_DATA_LF, /* expecting its LF */
    ST_TRAILER, /* collecting trailer lines until an empty one */
    ST_DONE,    /* final chunk and trailer verified */
};

static const struct slice trailer_sig_name = SLICE_LIT("x-amz-trailer-signature");

static int
is_signed(const struct chunked *d)
{
    return d->mode != CHUNKED_UNSIGNED_TRAILER;
}

static int
fail(struct chunked *d, int status, const char *why)
{
    d->error = status;
    d->errstr = why;
    return status;
}

/* Copies S into a fixed buffer of CAP bytes with a NUL; -1 when it does not fit. */
static int
copy_cstr(char *dst, size_t cap, struct slice s)
{
    if (s.len >= cap) {
        return -1;
    }
    if (s.len) {
        memcpy(dst, s.ptr, s.len);
    }
    dst[s.len] = '\0';
    return 0;
}

static int
is_hex64(struct slice s)
{
    size_t i;

    if (s.len != 64) {
        return 0;
    }
    for (i = 0; i < 64; i++) {
        if (hexval((unsigned char)s.ptr[i]) < 0) {
            return 0;
        }
    }
    return 1;
}

/* Lowercase copy of a 64-hex signature (S has been checked with is_hex64). */
static void
copy_sig(char out[65], struct slice s)
{
    size_t i;

    for (i = 0; i < 64; i++) {
        out[i] = (char)tolower((unsigned char)s.ptr[i]);
    }
    out[64] = '\0';
}

/* Builds PREFIX\nA\nB\nC\nD[\nE] and signs it; E may be SLICE_NULL to leave it out. */
static void
sign_lines(const uint8_t key[32], const char *prefix, struct slice a, struct slice b,
           struct slice c, struct slice dd, struct slice e, char out[65])
{
    char stackbuf[1024];
    size_t need = strlen(prefix) + a.len + b.len + c.len + dd.len + e.len + 8;
    char *buf = need <= sizeof(stackbuf) ? stackbuf : xmalloc(need);
    int n;

    if (e.ptr != NULL) {
        n = snprintf(buf, need, "%s\n%.*s\n%.*s\n%.*s\n%.*s\n%.*s", prefix, SLICE_ARGS(a),
                     SLICE_ARGS(b), SLICE_ARGS(c), SLICE_ARGS(dd), SLICE_ARGS(e));
    } else {
        n = snprintf(buf, need, "%s\n%.*s\n%.*s\n%.*s\n%.*s", prefix, SLICE_ARGS(a),
                     SLICE_ARGS(b), SLICE_ARGS(c), SLICE_ARGS(dd));
    }
    sigv4_sign_slice(key, slice_make(buf, (size_t)n), out);
    if (buf != stackbuf) {
        xfree(&buf);
    }
}

void
chunked_chunk_signature(const uint8_t key[32], struct slice amz_date, struct slice scope,
                        struct slice prev_sig, struct slice data_sha256_hex, char out[65])
{
    sign_lines(key, "AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev_sig,
               SLICE_LIT(SIGV4_EMPTY_SHA256), data_sha256_hex, out);
}

void
chunked_trailer_signature(const uint8_t key[32], struct slice amz_date, struct slice scope,
                          struct slice prev_sig, struct slice canonical_trailer, char out[65])
{
    char hash[65];

    sigv4_sha256_hex(canonical_trailer.ptr, canonical_trailer.len, hash);
    sign_lines(key, "AWS4-HMAC-SHA256-TRAILER", amz_date, scope, prev_sig,
               slice_make(hash, 64), SLICE_NULL, out);
}

void
chunked_init(struct chunked *d, enum chunked_mode mode, const uint8_t *key,
             struct slice seed_signature, struct slice amz_date, struct slice scope,
             struct slice declared_trailer)
{
    memset(d, 0, sizeof(*d));
    d->mode = mode;
    d->state = ST_SIZE;
    declared_trailer = slice_trim(declared_trailer);
    if (declared_trailer.len > 0) {
        d->trailer_alg = checksum_alg_from_header(declared_trailer);
        if (d->trailer_alg == CHECKSUM_NONE) {
            fail(d, PX_EINVAL, "x-amz-trailer must name one x-amz-checksum-* header");
        } else if (mode == CHUNKED_SIGNED) {
            fail(d, PX_EINVAL,
                 "x-amz-trailer needs x-amz-content-sha256 STREAMING-...-TRAILER");
        }
    }
    if (checksum_init(&d->sum, d->trailer_alg) != 0) {
        fail(d, PX_ENOMEM, "cannot set up the trailer checksum");
    }
    if (!is_signed(d)) {
        return;
    }
    if (key == NULL || !is_hex64(seed_signature) || amz_date.len != 16 ||
        copy_cstr(d->amz_date, sizeof(d->amz_date), amz_date) != 0 ||
        copy_cstr(d->scope, sizeof(d->scope), scope) != 0) {
        fail(d, PX_EINVAL, "signed aws-chunked body without a usable seed signature or scope");
        return;
    }
    memcpy(d->key, key, sizeof(d->key));
    copy_sig(d->prev_sig, seed_signature);
    d->chunk_md = EVP_MD_CTX_new();
    if (d->chunk_md == NULL) {
        fail(d, PX_ENOMEM, "cannot set up SHA-256");
    }
}

void
chunked_deinit(struct chunked *d)
{
    EVP_MD_CTX_free(d->chunk_md);
    d->chunk_md = NULL;
    checksum_deinit(&d->sum);
    xfree(&d->trailer);
    OPENSSL_cleanse(d->key, sizeof(d->key));
}

/*
 * Moves bytes of IN up to and including the next LF into d->line. Sets *COMPLETE when the LF
 * was seen; returns the bytes taken, or -1 when the line outgrows CHUNKED_MAX_LINE.
 */
static long
take_line(struct chunked *d, const uint8_t *in, size_t len, int *complete)
{
    const uint8_t *lf = memchr(in, '\n', len);
    size_t n = lf ? (size_t)(lf - in) + 1 : len;

    if (d->line_len + n > sizeof(d->line)) {
        return -1;
    }
    memcpy(d->line + d->line_len, in, n);
    d->line_len += n;
    *complete = lf != NULL;
    return (long)n;
}

/* Checks the announced signature of the chunk whose data hashed to HASH_HEX, then chains it. */
static int
verify_chunk(struct chunked *d, struct slice hash_hex)
{
    char want[65];

    chunked_chunk_signature(d->key, slice_make(d->amz_date, 16), slice_cstr(d->scope),
                            slice_make(d->prev_sig, 64), hash_hex, want);
    if (!ct_equal(want, 64, d->chunk_sig, 64)) {
        return fail(d, PX_EBADSIG, "chunk signature does not match");
    }
    memcpy(d->prev_sig, d->chunk_sig, sizeof(d->prev_sig));
    return PX_OK;
}

/* Parses "<hex>[;chunk-signature=<64 hex>]" (CRLF already stripped) and enters DATA or TRAILER. */
static int
start_chunk(struct chunked *d, struct slice line)
{
    static const struct slice ext = SLICE_LIT(";chunk-signature=");
    uint64_t size = 0;
    size_t i = 0;

    while (i < line.len && hexval((unsigned char)line.ptr[i]) >= 0) {
        if (size >> 60 != 0) {
            return fail(d, PX_EINVAL, "chunk size does not fit in 64 bits");
        }
        size = size << 4 | (uint64_t)hexval((unsigned char)line.ptr[i]);
        i++;
    }
    if (i == 0) {
        return fail(d, PX_EINVAL, "chunk header does not start with a hex size");
    }
    line = slice_make(line.ptr + i, line.len - i);
    if (is_signed(d)) {
        if (!slice_starts_with(line, ext) ||
            !is_hex64(slice_make(line.ptr + ext.len, line.len - ext.len))) {
            return fail(d, PX_EINVAL, "chunk header lacks ';chunk-signature=<64 hex>'");
        }
        copy_sig(d->chunk_sig, slice_make(line.ptr + ext.len, 64));
    } else if (line.len != 0) {
        return fail(d, PX_EINVAL, "unexpected text after the chunk size");
    }
    if (size == 0) {
        d->state = ST_TRAILER;
        return is_signed(d) ? verify_chunk(d, SLICE_LIT(SIGV4_EMPTY_SHA256)) : PX_OK;
    }
    d->remaining = size;
    d->state = ST_DATA;
    if (is_signed(d) && EVP_DigestInit_ex(d->chunk_md, EVP_sha256(), NULL) != 1) {
        return fail(d, PX_ENOMEM, "cannot start SHA-256");
    }
    return PX_OK;
}

/* Stores one trailer line as "name:value\n" (name lowercased, value trimmed). */
static int
add_trailer_line(struct chunked *d, struct slice line)
{
    long colon = slice_index(line, ':');
    struct slice name, value;
    size_t i;

    if (d->mode == CHUNKED_SIGNED) {
        return fail(d, PX_EINVAL, "trailer headers are not expected in this body");
    }
    if (colon <= 0) {
        return fail(d, PX_EINVAL, "trailer line is not 'name:value'");
    }
    name = slice_trim(slice_make(line.ptr, (size_t)colon));
    value = slice_trim(slice_make(line.ptr + colon + 1, line.len - (size_t)colon - 1));
    if (name.len == 0) {
        return fail(d, PX_EINVAL, "trailer line has an empty name");
    }
    if (d->trailer == NULL) {
        d->trailer = xmalloc(CHUNKED_MAX_TRAILER);
    }
    if (d->trailer_len + name.len + value.len + 2 > CHUNKED_MAX_TRAILER) {
        return fail(d, PX_ETOOBIG, "trailer too large");
    }
    for (i = 0; i < name.len; i++) {
        d->trailer[d->trailer_len++] = (char)tolower((unsigned char)name.ptr[i]);
    }
    d->trailer[d->trailer_len++] = ':';
    memcpy(d->trailer + d->trailer_len, value.ptr, value.len);
    d->trailer_len += value.len;
    d->trailer[d->trailer_len++] = '\n';
    return PX_OK;
}

/*
 * The empty line after the trailer arrived: check which headers came, the trailer signature
 * (over every trailer line but the signature itself, in canonical form) and the checksum.
 */
static int
finish_trailer(struct chunked *d)
{
    const char *want_name = checksum_header_name(d->trailer_alg);
    struct slice sig = SLICE_NULL, canon = SLICE_NULL;
    size_t pos = 0;

    while (pos < d->trailer_len) {
        const char *start = d->trailer + pos;
        const char *nl = memchr(start, '\n', d->trailer_len - pos);
        struct slice line = slice_make(start, (size_t)(nl - start));
        long colon = slice_index(line, ':');
        struct slice name = slice_make(line.ptr, (size_t)colon);
        struct slice value = slice_make(line.ptr + colon + 1, line.len - (size_t)colon - 1);

        pos += line.len + 1;
        if (slice_eq(name, trailer_sig_name)) {
            if (d->mode != CHUNKED_SIGNED_TRAILER || sig.ptr != NULL) {
                return fail(d, PX_EINVAL, "unexpected x-amz-trailer-signature");
            }
            sig = value;
        } else if (want_name != NULL && slice_eq(name, slice_cstr(want_name))) {
            if (d->trailer_name.ptr != NULL) {
                return fail(d, PX_EINVAL, "checksum trailer repeated");
            }
            d->trailer_name = name;
            d->trailer_value = value;
            /* the only signed trailer line we accept, so it is the whole canonical trailer */
            canon = slice_make(line.ptr, line.len + 1);
        } else {
            return fail(d, PX_EINVAL, "trailer header not announced in x-amz-trailer");
        }
    }
    if (d->trailer_alg != CHECKSUM_NONE && d->trailer_name.ptr == NULL) {
        return fail(d, PX_EINVAL, "the checksum announced in x-amz-trailer is missing");
    }
    if (d->mode == CHUNKED_SIGNED_TRAILER && (sig.ptr != NULL || canon.ptr != NULL)) {
        char want[65];

        if (sig.ptr == NULL || !is_hex64(sig)) {
            return fail(d, PX_EINVAL, "x-amz-trailer-signature missing or malformed");
        }
        chunked_trailer_signature(d->key, slice_make(d->amz_date, 16), slice_cstr(d->scope),
                                  slice_make(d->prev_sig, 64),
                                  canon.ptr ? canon : slice_make("", 0), want);
        copy_sig(d->chunk_sig, sig);
        if (!ct_equal(want, 64, d->chunk_sig, 64)) {
            return fail(d, PX_EBADSIG, "trailer signature does not match");
        }
    }
    if (d->trailer_alg != CHECKSUM_NONE) {
        char got[CHECKSUM_BASE64_MAX];

        checksum_final_base64(&d->sum, got);
        if (!slice_eq(slice_cstr(got), d->trailer_value)) {
            d->checksum_mismatch = 1;
            return fail(d, PX_EBADSIG, "trailer checksum does not match the payload");
        }
    }
    d->state = ST_DONE;
    return PX_OK;
}

int
chunked_feed(struct chunked *d, const uint8_t *in, size_t len, size_t *consumed,
             struct slice *payload)
{
    size_t pos = 0;
    int rc, complete;
    long n;

    *consumed = 0;
    *payload = slice_make((const char *)in, 0);
    if (d->error) {
        return d->error;
    }
    if (d->state == ST_DONE) {
        return len == 0 ? PX_OK : fail(d, PX_EINVAL, "data after the final chunk");
    }
    while (pos < len) {
        switch (d->state) {
        case ST_SIZE:
            n = take_line(d, in + pos, len - pos, &complete);
            if (n < 0) {
                return fail(d, PX_ETOOBIG, "chunk header line too long");
            }
            pos += (size_t)n;
            if (!complete) {
                break;
            }
            if (d->line_len < 2 || d->line[d->line_len - 2] != '\r') {
                return fail(d, PX_EINVAL, "chunk header line does not end in CRLF");
            }
            rc = start_chunk(d, slice_make(d->line, d->line_len - 2));
            d->line_len = 0;
            if (rc != PX_OK) {
                return rc;
            }
            break;
        case ST_DATA: {
            size_t take = len - pos < d->remaining ? len - pos : (size_t)d->remaining;
            const uint8_t *data = in + pos;

            if (is_signed(d)) {
                EVP_DigestUpdate(d->chunk_md, data, take);
            }
            checksum_update(&d->sum, data, take);
            d->remaining -= take;
            d->decoded += take;
            pos += take;
            if (d->remaining == 0) {
                d->state = ST_DATA_CR;
                if (is_signed(d)) {
                    uint8_t md[32];
                    char hex[65];
                    unsigned int mdlen = 0;

                    EVP_DigestFinal_ex(d->chunk_md, md, &mdlen);
                    hex_lower(md, sizeof(md), hex);
                    if ((rc = verify_chunk(d, slice_make(hex, 64))) != PX_OK) {
                        return rc;
                    }
                }
            }
            *payload = slice_make((const char *)data, take);
            *consumed = pos;
            return PX_OK;
        }
        case ST_DATA_CR:
        case ST_DATA_LF:
            if (in[pos] != (d->state == ST_DATA_CR ? '\r' : '\n')) {
                return fail(d, PX_EINVAL, "chunk data is not followed by CRLF");
            }
            pos++;
            d->state = d->state == ST_DATA_CR ? ST_DATA_LF : ST_SIZE;
            break;
        case ST_TRAILER: {
            struct slice line;

            n = take_line(d, in + pos, len - pos, &complete);
            if (n < 0) {
                return fail(d, PX_ETOOBIG, "trailer line too long");
            }
            pos += (size_t)n;
            if (!complete) {
                break;
            }
            /* trailer lines end in CRLF; a bare LF is tolerated (it is not signed) */
            line = slice_make(d->line, d->line_len - 1);
            if (line.len > 0 && line.ptr[line.len - 1] == '\r') {
                line.len--;
            }
            d->line_len = 0;
            if (line.len > 0) {
                if ((rc = add_trailer_line(d, line)) != PX_OK) {
                    return rc;
                }
                break;
            }
            if ((rc = finish_trailer(d)) != PX_OK) {
                return rc;
            }
            *consumed = pos;
            return PX_OK;
        }
        default:
            return fail(d, PX_EINVAL, "data after the final chunk");
        }
    }
    *consumed = len;
    return PX_EAGAIN;
}

int
chunked_done(const struct chunked *d)
{
    return d->error == 0 && d->state == ST_DONE;
}

uint64_t
chunked_decoded_bytes(const struct chunked *d)
{
    return d->decoded;
}

int
chunked_trailer_checksum(const struct chunked *d, struct slice *name, struct slice *value)
{
    if (!chunked_done(d) || d->trailer_name.ptr == NULL) {
        return 0;
    }
    *name = d->trailer_name;
    *value = d->trailer_value;
    return 1;
}

int
chunked_signer_init(struct chunked_signer *s, const uint8_t key[32], struct slice seed_signature,
                    struct slice amz_date, struct slice scope)
{
    memset(s, 0, sizeof(*s));
    if (!is_hex64(seed_signature) || copy_cstr(s->amz_date, sizeof(s->amz_date), amz_date) != 0 ||
        copy_cstr(s->scope, sizeof(s->scope), scope) != 0) {
        return -1;
    }
    memcpy(s->key, key, sizeof(s->key));
    copy_sig(s->prev_sig, seed_signature);
    return 0;
}

void
chunked_signer_deinit(struct chunked_signer *s)
{
    OPENSSL_cleanse(s->key, sizeof(s->key));
}

size_t
chunked_signer_chunk(struct chunked_signer *s, const void *data, size_t len, char *out)
{
    char hash[65];
    int n;

    sigv4_sha256_hex(len ? data : "", len, hash);
    chunked_chunk_signature(s->key, slice_cstr(s->amz_date), slice_cstr(s->scope),
                            slice_make(s->prev_sig, 64), slice_make(hash, 64), s->prev_sig);
    n = snprintf(out, CHUNKED_SIGNER_HEADER_MAX, "%zx;chunk-signature=%s\r\n", len, s->prev_sig);
    return (size_t)n;
}

char *
chunked_signer_trailer(struct chunked_signer *s, struct pool *p, struct slice name,
                       struct slice value)
{
    char *canon = pool_printf(p, "%.*s:%.*s\n", SLICE_ARGS(name), SLICE_ARGS(value));
    char sig[65];
    size_t i;

    for (i = 0; i < name.len; i++) {
        canon[i] = (char)tolower((unsigned char)canon[i]);
    }
    chunked_trailer_signature(s->key, slice_cstr(s->amz_date), slice_cstr(s->scope),
                              slice_make(s->prev_sig, 64), slice_cstr(canon), sig);
    memcpy(s->prev_sig, sig, sizeof(sig));
    return pool_printf(p, "%.*s\r\nx-amz-trailer-signature:%s\r\n\r\n",
                       (int)(name.len + 1 + value.len), canon, sig);
}
