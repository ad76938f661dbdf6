/*
 * sigv4.h - AWS Signature Version 4 for S3: canonical query and request, string to sign,
 * signing-key derivation, signature; plus a per-thread cache of derived keys.
 * Pure computation: bytes in, strings out (sans-I/O).
 */
#ifndef S3TEE_SIGV4_H
#define S3TEE_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include "common/pool.h"
#include "common/slice.h"

/* hex SHA-256 of the empty string: the "empty hash" line of chunk strings-to-sign. */
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct sigv4_header {
    struct slice name;  /* as received; any case */
    struct slice value; /* as received; trimmed and space-folded when canonicalised */
};

struct sigv4_request {
    struct slice method;                /* "PUT" */
    struct slice canonical_uri;         /* already URI-encoded path, e.g. "/bucket/my%20key" */
    struct slice query;                 /* raw query string as received, without '?'; may be empty */
    const struct sigv4_header *headers; /* all request headers (must include host) */
    size_t nheaders;                    /* entries in headers */
    struct slice payload_hash;          /* hex sha256, UNSIGNED-PAYLOAD, STREAMING-... */
};

/* errstr sentinels of sigv4_canonical_request() (compare by address). */
extern const char sigv4_err_missing_header[];  /* a signed header is not in the request */
extern const char sigv4_err_signed_headers[];  /* SignedHeaders has an empty name */
extern const char sigv4_err_query[];           /* the query string has a bad %-escape */

/*
 * sigv4_canonical_query - split QUERY on '&' (empty pieces are skipped), percent-decode each
 * name and value, re-encode them with uri_encode(keep_slash=0), sort by encoded name then
 * value (byte order) and join "name=value" with '&'; a parameter without '=' gets "name=".
 * A '+' stays a literal plus (it is re-encoded as %2B). When PRESIGNED, X-Amz-Signature is
 * left out. Returns a pool string, or NULL on a bad escape or a decoded NUL.
 */
char *sigv4_canonical_query(struct pool *p, struct slice query, int presigned);
/*
 * sigv4_canonical_request - "method\nuri\nquery\nheaders\n\nsigned_headers\npayload".
 * SIGNED_HEADERS is the ';' list from the Authorization header (or X-Amz-SignedHeaders); it
 * is used verbatim, and for each name the request's headers of that name (any case) are
 * joined with ',', each trimmed with inner runs of spaces/tabs folded to one space.
 * Returns a pool string, or NULL with *ERRSTR one of the sentinels above.
 */
char *sigv4_canonical_request(struct pool *p, const struct sigv4_request *req,
                              struct slice signed_headers, int presigned, const char **errstr);
/* "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256(canonical_request)>", in pool P. */
char *sigv4_string_to_sign(struct pool *p, struct slice amz_date, struct slice scope,
                           const char *canonical_request);
/*
 * kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date8), region), service), "aws4_request").
 * Every intermediate (stack copies, the thread's SHA-256 state) is wiped before returning.
 */
void sigv4_signing_key(struct slice secret, struct slice date8, struct slice region,
                       struct slice service, uint8_t out[32]);
/* hex HMAC-SHA256(KEY, STRING_TO_SIGN) into OUT (64 lowercase hex digits and a NUL). */
void sigv4_sign(const uint8_t key[32], const char *string_to_sign, char out[65]);
/* The same for a string to sign that is a slice. */
void sigv4_sign_slice(const uint8_t key[32], struct slice string_to_sign, char out[65]);
/* hex SHA-256 of DATA into OUT (65 bytes incl. NUL). */
void sigv4_sha256_hex(const void *data, size_t len, char out[65]);
/* OpenSSL's SHA-256 (an EVP_MD *), fetched once per process: EVP_sha256() in an
 * EVP_DigestInit_ex costs a lookup by name on every call. */
void *sigv4_sha256_md(void);

/*
 * Per-thread cache of derived signing keys: no locking, one per worker thread. Entries are
 * keyed by a SHA-256 over (access key, secret, date, region, service), so a rotated secret
 * for the same access key misses and derives a new key; secrets themselves are not stored.
 * The entries live in a page of their own that core dumps leave out (signing/secmem.h).
 */
#define SIGV4_KEY_CACHE_SIZE 16

struct sigv4_key_cache_entry {
    uint8_t id[32];     /* SHA-256 of the length-prefixed (access key, secret, date8, region, service) */
    uint8_t key[32];    /* derived signing key */
    uint64_t last_used; /* cache tick of the last use, for LRU eviction; 0 = empty slot */
};

struct sigv4_key_cache {
    struct sigv4_key_cache_entry *entries; /* SIGV4_KEY_CACHE_SIZE, small enough to scan (secmem) */
    uint64_t tick;   /* bumped on every lookup */
    uint64_t hits;   /* lookups answered from the cache (for stats and tests) */
    uint64_t misses; /* lookups that derived a key */
};

/* Maps the entries (aborts if it cannot: no memory, same policy as xmalloc). */
void sigv4_key_cache_init(struct sigv4_key_cache *c);
/* Wipes every key and unmaps the entries (secmem_free). */
void sigv4_key_cache_deinit(struct sigv4_key_cache *c);
/*
 * sigv4_key_cache_get - the derived key for these inputs, derived and stored on a miss
 * (evicting the least recently used entry). The result is owned by the cache and valid
 * until the next call on C.
 */
const uint8_t *sigv4_key_cache_get(struct sigv4_key_cache *c, struct slice access_key,
                                   struct slice secret, struct slice date8, struct slice region,
                                   struct slice service);

#endif
