/*
 * chunked.h - aws-chunked body decoder (sans-I/O, zero copy) and the matching encoder.
 *
 * Wire forms, chosen by x-amz-content-sha256:
 *   STREAMING-AWS4-HMAC-SHA256-PAYLOAD          CHUNKED_SIGNED
 *       <hex>;chunk-signature=<sig>\r\n <data> \r\n ... 0;chunk-signature=<sig>\r\n \r\n
 *   STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER  CHUNKED_SIGNED_TRAILER
 *       ... 0;chunk-signature=<sig>\r\n <name>:<value>\r\n x-amz-trailer-signature:<sig>\r\n \r\n
 *   STREAMING-UNSIGNED-PAYLOAD-TRAILER          CHUNKED_UNSIGNED_TRAILER
 *       <hex>\r\n <data> \r\n ... 0\r\n <name>:<value>\r\n \r\n
 *
 * Chunk signatures chain from the request's seed signature (the Authorization header's):
 *   "AWS4-HMAC-SHA256-PAYLOAD\n<amz_date>\n<scope>\n<previous sig>\n<sha256("")>\n<sha256(data)>"
 * The trailer signature chains from the final (empty) chunk's:
 *   "AWS4-HMAC-SHA256-TRAILER\n<amz_date>\n<scope>\n<previous sig>\n<sha256(trailer)>"
 * where the trailer is each header (lowercase name, sorted) as "name:value\n".
 */
#ifndef S3TEE_CHUNKED_H
#define S3TEE_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

#include "checksum.h"
#include "common/pool.h"
#include "common/slice.h"

#define CHUNKED_MAX_LINE 4096     /* longest chunk header or trailer line, CRLF included */
#define CHUNKED_MAX_TRAILER 16384 /* all trailer lines together */
#define CHUNKED_MAX_SCOPE 256     /* longest credential scope accepted */

enum chunked_mode {
    CHUNKED_SIGNED,           /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD */
    CHUNKED_SIGNED_TRAILER,   /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER */
    CHUNKED_UNSIGNED_TRAILER, /* STREAMING-UNSIGNED-PAYLOAD-TRAILER */
};

struct evp_md_ctx_st; /* OpenSSL's EVP_MD_CTX */

struct chunked {
    enum chunked_mode mode;          /* framing and whether signatures are checked */
    int state;                       /* where in the framing we are (enum in chunked.c) */
    int error;                       /* sticky px_status once a call failed, else 0 */
    const char *errstr;              /* static reason for the failure, or NULL */
    int checksum_mismatch;           /* set with PX_EBADSIG when the trailer checksum was wrong */
    uint8_t key[32];                 /* derived signing key (signed modes; wiped in deinit) */
    char amz_date[17];               /* "20130524T000000Z" */
    char scope[CHUNKED_MAX_SCOPE];   /* "20130524/us-east-1/s3/aws4_request", NUL-terminated */
    char prev_sig[65];               /* previous signature of the chain; the seed at first */
    char chunk_sig[65];              /* signature announced in the current chunk's header */
    uint64_t remaining;              /* data bytes still to come in the current chunk */
    uint64_t decoded;                /* payload bytes handed out so far */
    struct evp_md_ctx_st *chunk_md;  /* SHA-256 of the current chunk's data (owned) */
    enum checksum_alg trailer_alg;   /* checksum named by x-amz-trailer, or CHECKSUM_NONE */
    struct checksum sum;             /* running trailer_alg checksum of the payload */
    size_t line_len;                 /* bytes in line */
    char line[CHUNKED_MAX_LINE];     /* header or trailer line being collected across feeds */
    char *trailer;                   /* trailer lines as "name:value\n" (xmalloc'd, owned) */
    size_t trailer_len;              /* bytes in trailer */
    struct slice trailer_name;       /* checksum header received in the trailer (into trailer) */
    struct slice trailer_value;      /* its base64 value (into trailer) */
};

/*
 * chunked_init - caller-owned storage; chunked_deinit() always. KEY (32 bytes),
 * SEED_SIGNATURE (64 hex), AMZ_DATE and SCOPE are copied; for CHUNKED_UNSIGNED_TRAILER they
 * may be NULL/empty. DECLARED_TRAILER is the x-amz-trailer header value (may be empty): the
 * trailer must then carry exactly that checksum, which the decoder computes over the payload
 * and compares. Bad arguments (an x-amz-trailer that is not a checksum we know, an
 * oversized scope) make the first chunked_feed() fail with PX_EINVAL.
 */
void chunked_init(struct chunked *d, enum chunked_mode mode, const uint8_t *key,
                  struct slice seed_signature, struct slice amz_date, struct slice scope,
                  struct slice declared_trailer);
void chunked_deinit(struct chunked *d);
/*
 * chunked_feed - decode the next bytes of the body. Returns:
 *   PX_OK      consumed *CONSUMED bytes (> 0 when LEN > 0) of IN; *PAYLOAD is decoded data
 *              (a slice into IN, maybe empty). Call again with the rest.
 *   PX_EAGAIN  all of IN consumed, need more input (payload empty).
 *   PX_EINVAL  malformed framing, or bytes after the end (d->errstr says what)
 *   PX_EBADSIG a chunk or trailer signature did not match; with d->checksum_mismatch set,
 *              the trailer checksum did not match the payload (S3 "BadDigest")
 *   PX_ETOOBIG a chunk header or trailer line over the limits above
 * Errors are sticky. A chunk's signature is checked as soon as its last data byte arrives,
 * before that byte is handed out; earlier bytes of the chunk are handed out unchecked, so
 * the caller must hold back the end of the upstream body until chunked_done().
 * *CONSUMED never exceeds LEN; a payload slice lies within the consumed range.
 */
int chunked_feed(struct chunked *d, const uint8_t *in, size_t len, size_t *consumed,
                 struct slice *payload);
/* 1 once the final chunk (and trailer) arrived and verified. */
int chunked_done(const struct chunked *d);
uint64_t chunked_decoded_bytes(const struct chunked *d);
/*
 * chunked_trailer_checksum - after chunked_done(), the checksum header name (lowercase) and
 * base64 value received in the trailer (slices into D, valid until chunked_deinit()).
 * Returns 1, or 0 when there was no checksum trailer.
 */
int chunked_trailer_checksum(const struct chunked *d, struct slice *name, struct slice *value);

/*
 * Encoder: frames a body as signed aws-chunked (tests, and the replicator when it re-signs).
 * Usage: for each chunk, chunked_signer_chunk() then the data then "\r\n"; then the final
 * chunk: chunked_signer_chunk(s, NULL, 0, out), followed by either "\r\n" (no trailer) or
 * chunked_signer_trailer().
 */
#define CHUNKED_SIGNER_HEADER_MAX 100 /* "<16 hex>;chunk-signature=<64 hex>\r\n" + NUL */

struct chunked_signer {
    uint8_t key[32];               /* derived signing key (wiped in deinit) */
    char amz_date[17];             /* "20130524T000000Z" */
    char scope[CHUNKED_MAX_SCOPE]; /* credential scope, NUL-terminated */
    char prev_sig[65];             /* last signature produced; the seed at first */
};

/* KEY, SEED_SIGNATURE (64 hex), AMZ_DATE and SCOPE are copied. Returns 0, or -1 if too long. */
int chunked_signer_init(struct chunked_signer *s, const uint8_t key[32],
                        struct slice seed_signature, struct slice amz_date, struct slice scope);
void chunked_signer_deinit(struct chunked_signer *s);
/* Writes "<hex len>;chunk-signature=<sig>\r\n" for DATA into OUT (>= CHUNKED_SIGNER_HEADER_MAX);
 * returns its length (NUL not counted) and advances the chain. */
size_t chunked_signer_chunk(struct chunked_signer *s, const void *data, size_t len, char *out);
/* The signed trailer after the final chunk: "<name>:<value>\r\nx-amz-trailer-signature:<sig>\r\n\r\n"
 * in pool P (NAME is lowercased). */
char *chunked_signer_trailer(struct chunked_signer *s, struct pool *p, struct slice name,
                             struct slice value);
/* The chunk / trailer signatures themselves, for tests and tools (OUT: 65 bytes). */
void chunked_chunk_signature(const uint8_t key[32], struct slice amz_date, struct slice scope,
                             struct slice prev_sig, struct slice data_sha256_hex, char out[65]);
void chunked_trailer_signature(const uint8_t key[32], struct slice amz_date, struct slice scope,
                               struct slice prev_sig, struct slice canonical_trailer,
                               char out[65]);

#endif
