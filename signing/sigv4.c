/* sigv4.c - SigV4 canonicalisation, key derivation and signing (S3 flavour: paths are not normalised). */
#include "sigv4.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/xalloc.h"
#include "secmem.h"
#include "uri.h"

const char sigv4_err_missing_header[] = "a header listed in SignedHeaders is not in the request";
const char sigv4_err_signed_headers[] = "SignedHeaders contains an empty header name";
const char sigv4_err_query[] = "the query string has a malformed percent-escape";

/* A string growing inside a pool: outgrown blocks stay in the pool until it is released. */
struct sbuf {
    struct pool *pool; /* owner of every block */
    char *ptr;         /* current block */
    size_t len;        /* bytes used, excluding the NUL kept after them */
    size_t cap;        /* bytes available in ptr, including room for the NUL */
};

static void
sbuf_init(struct sbuf *b, struct pool *p, size_t cap)
{
    b->pool = p;
    b->cap = cap < 64 ? 64 : cap;
    b->ptr = pool_alloc(p, b->cap);
    b->len = 0;
    b->ptr[0] = '\0';
}

static void
sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap * 2;
        char *np;

        while (b->len + n + 1 > cap) {
            cap *= 2;
        }
        np = pool_alloc(b->pool, cap);
        memcpy(np, b->ptr, b->len);
        b->ptr = np;
        b->cap = cap;
    }
    if (n) {
        memcpy(b->ptr + b->len, s, n);
    }
    b->len += n;
    b->ptr[b->len] = '\0';
}

static void
sbuf_add_slice(struct sbuf *b, struct slice s)
{
    sbuf_add(b, s.ptr, s.len);
}

static void
sbuf_add_char(struct sbuf *b, char c)
{
    sbuf_add(b, &c, 1);
}

/* One query parameter, both halves already in canonical (re-encoded) form. */
struct qparam {
    struct slice name;  /* encoded name */
    struct slice value; /* encoded value, possibly empty */
};

static int
qparam_cmp(const void *a, const void *b)
{
    const struct qparam *x = a, *y = b;
    int c = slice_cmp(x->name, y->name);

    return c != 0 ? c : slice_cmp(x->value, y->value);
}

/* Decodes then re-encodes one half of a parameter, so %2f, %7E and '~' all canonicalise alike. */
static int
reencode(struct pool *p, struct slice raw, struct slice *out)
{
    struct slice dec;
    char *enc;

    if (uri_decode_pool(p, raw, 0, &dec) != 0) {
        return -1;
    }
    enc = uri_encode_pool(p, dec, 0);
    *out = slice_cstr(enc);
    return 0;
}

char *
sigv4_canonical_query(struct pool *p, struct slice query, int presigned)
{
    struct qparam *params;
    size_t n = 0, max = 1, i, start;
    struct sbuf b;

    for (i = 0; i < query.len; i++) {
        max += query.ptr[i] == '&';
    }
    params = pool_alloc(p, max * sizeof(*params));
    for (start = 0; start <= query.len;) {
        struct slice piece = slice_make(query.ptr + start, query.len - start);
        long amp = slice_index(piece, '&');
        long eq;

        if (amp >= 0) {
            piece.len = (size_t)amp;
        }
        start += piece.len + 1;
        if (piece.len == 0) {
            continue;
        }
        eq = slice_index(piece, '=');
        if (eq < 0) {
            if (reencode(p, piece, &params[n].name) != 0) {
                return NULL;
            }
            params[n].value = slice_make("", 0);
        } else {
            if (reencode(p, slice_make(piece.ptr, (size_t)eq), &params[n].name) != 0 ||
                reencode(p, slice_make(piece.ptr + eq + 1, piece.len - (size_t)eq - 1),
                         &params[n].value) != 0) {
                return NULL;
            }
        }
        /* the signature cannot sign itself: presigned URLs leave it out of the canonical form */
        if (presigned && slice_eq(params[n].name, SLICE_LIT("X-Amz-Signature"))) {
            continue;
        }
        n++;
    }
    qsort(params, n, sizeof(*params), qparam_cmp);
    sbuf_init(&b, p, query.len + 16);
    for (i = 0; i < n; i++) {
        if (i > 0) {
            sbuf_add_char(&b, '&');
        }
        sbuf_add_slice(&b, params[i].name);
        sbuf_add_char(&b, '=');
        sbuf_add_slice(&b, params[i].value);
    }
    return b.ptr;
}

/* Appends VALUE trimmed, with every inner run of spaces and tabs folded to one space. */
static void
add_folded(struct sbuf *b, struct slice value)
{
    size_t i;
    int in_space = 0;

    value = slice_trim(value);
    for (i = 0; i < value.len;) {
        size_t run = i;

        if (value.ptr[i] == ' ' || value.ptr[i] == '\t') {
            in_space = 1;
            i++;
            continue;
        }
        if (in_space) {
            sbuf_add_char(b, ' ');
            in_space = 0;
        }
        /* a run of non-blank bytes in one copy */
        while (i < value.len && value.ptr[i] != ' ' && value.ptr[i] != '\t') {
            i++;
        }
        sbuf_add(b, value.ptr + run, i - run);
    }
}

char *
sigv4_canonical_request(struct pool *p, const struct sigv4_request *req,
                        struct slice signed_headers, int presigned, const char **errstr)
{
    struct sbuf b;
    char *query;
    size_t start;

    query = sigv4_canonical_query(p, req->query, presigned);
    if (query == NULL) {
        *errstr = sigv4_err_query;
        return NULL;
    }
    sbuf_init(&b, p, 512 + req->canonical_uri.len + strlen(query));
    sbuf_add_slice(&b, req->method);
    sbuf_add_char(&b, '\n');
    sbuf_add_slice(&b, req->canonical_uri);
    sbuf_add_char(&b, '\n');
    sbuf_add(&b, query, strlen(query));
    sbuf_add_char(&b, '\n');

    for (start = 0; start <= signed_headers.len;) {
        struct slice name = slice_make(signed_headers.ptr + start, signed_headers.len - start);
        long semi = slice_index(name, ';');
        size_t i, found = 0;

        if (semi >= 0) {
            name.len = (size_t)semi;
        }
        start += name.len + 1;
        if (name.len == 0) {
            *errstr = sigv4_err_signed_headers;
            return NULL;
        }
        {
            size_t at = b.len;

            sbuf_add(&b, name.ptr, name.len);
            for (i = at; i < b.len; i++) {
                b.ptr[i] = (char)tolower((unsigned char)b.ptr[i]);
            }
        }
        sbuf_add_char(&b, ':');
        for (i = 0; i < req->nheaders; i++) {
            if (!slice_eq_nocase(req->headers[i].name, name)) {
                continue;
            }
            if (found++) {
                sbuf_add_char(&b, ',');
            }
            add_folded(&b, req->headers[i].value);
        }
        if (!found) {
            *errstr = sigv4_err_missing_header;
            return NULL;
        }
        sbuf_add_char(&b, '\n');
    }
    sbuf_add_char(&b, '\n');
    sbuf_add_slice(&b, signed_headers);
    sbuf_add_char(&b, '\n');
    sbuf_add_slice(&b, req->payload_hash);
    return b.ptr;
}

/*
 * SHA-256 without OpenSSL 3's per-call algorithm lookup: EVP_sha256() and HMAC() fetch the
 * implementation by name on every use, which the benchmark profile showed among the top
 * costs of a small request (a request hashes and HMACs a dozen times). The algorithm is
 * fetched once per process, and each thread keeps one digest context.
 */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static pthread_key_t sha256_ctx_key; /* per-thread EVP_MD_CTX, freed when the thread ends */

static void
sha256_ctx_free(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void
sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    pthread_key_create(&sha256_ctx_key, sha256_ctx_free);
}

static EVP_MD_CTX *
sha256_begin(void)
{
    EVP_MD_CTX *ctx;

    pthread_once(&sha256_once, sha256_fetch);
    ctx = pthread_getspecific(sha256_ctx_key);
    if (ctx == NULL) {
        ctx = EVP_MD_CTX_new();
        pthread_setspecific(sha256_ctx_key, ctx);
    }
    if (sha256_md == NULL || ctx == NULL || EVP_DigestInit_ex2(ctx, sha256_md, NULL) != 1) {
        abort(); /* no SHA-256 means no signing at all */
    }
    return ctx;
}

void *
sigv4_sha256_md(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md;
}

static void
sha256_once_over(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32])
{
    EVP_MD_CTX *c = sha256_begin();
    unsigned int n = 32;

    EVP_DigestUpdate(c, a, alen);
    if (blen > 0) {
        EVP_DigestUpdate(c, b, blen);
    }
    EVP_DigestFinal_ex(c, out, &n);
}

void
sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t md[32];

    sha256_once_over(data, len, NULL, 0, md);
    hex_lower(md, sizeof(md), out);
}

char *
sigv4_string_to_sign(struct pool *p, struct slice amz_date, struct slice scope,
                     const char *canonical_request)
{
    char hash[65];

    sigv4_sha256_hex(canonical_request, strlen(canonical_request), hash);
    {
        struct slice parts[] = {SLICE_LIT("AWS4-HMAC-SHA256\n"), amz_date, SLICE_LIT("\n"), scope,
                                SLICE_LIT("\n"), slice_make(hash, 64)};

        return pool_join(p, parts, sizeof(parts) / sizeof(parts[0]));
    }
}

/* RFC 2104 over the pre-fetched SHA-256: H((K ^ opad) || H((K ^ ipad) || m)). */
static void
hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[32])
{
    uint8_t k[64], pad[64], inner[32];
    size_t i;

    memset(k, 0, sizeof(k));
    if (keylen > sizeof(k)) {
        sha256_once_over(key, keylen, NULL, 0, k);
    } else {
        memcpy(k, key, keylen);
    }
    for (i = 0; i < 64; i++) {
        pad[i] = k[i] ^ 0x36;
    }
    sha256_once_over(pad, 64, msg, msglen, inner);
    for (i = 0; i < 64; i++) {
        pad[i] = k[i] ^ 0x5c;
    }
    sha256_once_over(pad, 64, inner, 32, out);
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
    OPENSSL_cleanse(inner, sizeof(inner));
}

/* The thread's SHA-256 context still holds the state of its last digest: after a key
 * derivation that state is the derived key itself, so start it afresh. */
static void
sha256_scrub(void)
{
    (void)sha256_begin();
}

void
sigv4_signing_key(struct slice secret, struct slice date8, struct slice region,
                  struct slice service, uint8_t out[32])
{
    uint8_t k[32];
    char stackbuf[256];
    char *seed = stackbuf;
    size_t seedlen = 4 + secret.len;

    if (seedlen > sizeof(stackbuf)) {
        seed = xmalloc(seedlen);
    }
    memcpy(seed, "AWS4", 4);
    if (secret.len) {
        memcpy(seed + 4, secret.ptr, secret.len);
    }
    hmac_sha256(seed, seedlen, date8.ptr, date8.len, k);
    OPENSSL_cleanse(seed, seedlen);
    if (seed != stackbuf) {
        xfree(&seed);
    }
    hmac_sha256(k, 32, region.ptr, region.len, k);
    hmac_sha256(k, 32, service.ptr, service.len, k);
    hmac_sha256(k, 32, "aws4_request", 12, out);
    OPENSSL_cleanse(k, sizeof(k));
    sha256_scrub();
}

void
sigv4_sign_slice(const uint8_t key[32], struct slice string_to_sign, char out[65])
{
    uint8_t mac[32];

    hmac_sha256(key, 32, string_to_sign.ptr, string_to_sign.len, mac);
    hex_lower(mac, sizeof(mac), out);
}

void
sigv4_sign(const uint8_t key[32], const char *string_to_sign, char out[65])
{
    sigv4_sign_slice(key, slice_cstr(string_to_sign), out);
}

void
sigv4_key_cache_init(struct sigv4_key_cache *c)
{
    memset(c, 0, sizeof(*c));
    c->entries = secmem_alloc(SIGV4_KEY_CACHE_SIZE * sizeof(c->entries[0]));
    if (c->entries == NULL) {
        abort(); /* out of memory (or no MADV_DONTDUMP): same policy as xmalloc */
    }
}

void
sigv4_key_cache_deinit(struct sigv4_key_cache *c)
{
    secmem_free(c->entries, SIGV4_KEY_CACHE_SIZE * sizeof(c->entries[0]));
    memset(c, 0, sizeof(*c));
}

/* Length-prefixing each field keeps ("ab","c") and ("a","bc") apart. */
static void
id_add(EVP_MD_CTX *md, struct slice s)
{
    uint8_t len[8];
    int i;

    for (i = 0; i < 8; i++) {
        len[i] = (uint8_t)((uint64_t)s.len >> (56 - 8 * i));
    }
    EVP_DigestUpdate(md, len, sizeof(len));
    if (s.len) {
        EVP_DigestUpdate(md, s.ptr, s.len);
    }
}

const uint8_t *
sigv4_key_cache_get(struct sigv4_key_cache *c, struct slice access_key, struct slice secret,
                    struct slice date8, struct slice region, struct slice service)
{
    struct sigv4_key_cache_entry *victim = &c->entries[0];
    EVP_MD_CTX *md = sha256_begin(); /* the thread's context: no fetch, no allocation */
    uint8_t id[32];
    unsigned int n = 0;
    size_t i;

    id_add(md, access_key);
    id_add(md, secret);
    id_add(md, date8);
    id_add(md, region);
    id_add(md, service);
    EVP_DigestFinal_ex(md, id, &n);

    c->tick++;
    for (i = 0; i < SIGV4_KEY_CACHE_SIZE; i++) {
        struct sigv4_key_cache_entry *e = &c->entries[i];

        if (e->last_used != 0 && memcmp(e->id, id, sizeof(id)) == 0) {
            e->last_used = c->tick;
            c->hits++;
            return e->key;
        }
        if (e->last_used < victim->last_used) {
            victim = e;
        }
    }
    c->misses++;
    sigv4_signing_key(secret, date8, region, service, victim->key);
    memcpy(victim->id, id, sizeof(id));
    victim->last_used = c->tick;
    return victim->key;
}
