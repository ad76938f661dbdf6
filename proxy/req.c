/*
 * req.c - one S3 request, from parsed head to last response byte.
 *
 *   START -> ADDRESS -> AUTH -> UPSTREAM ----------------------------> RESPOND -> DONE
 *              |         |        | body: client -> decode/verify -> upbuf -> curl
 *              |         |        |        (last byte held back until verified)
 *              +- 400 ---+- 403 --+- 400 (bad digest) / 503 (store down) -> ERROR
 *
 * Two parties keep a req alive: the front end (until send_end/abort or req_client_gone)
 * and the store transfer (until on_done or upstream_abort). req_maybe_free() runs when
 * both have let go.
 *
 * The fence: the store only commits a body once it has Content-Length bytes. We hand the
 * store every byte but the last until the whole body verified (payload SHA-256, chunk
 * signatures, trailer checksums, length). On any failure the transfer is aborted, its
 * connection dropped, and the store discards the partial upload.
 */
#include "proxy/req.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "common/log.h"
#include "common/pool.h"
#include "common/status.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "proxy/accesslog.h"
#include "proxy/s3addr.h"
#include "proxy/s3err.h"
#include "common/upstream.h"
#include "proxy/worker.h"
#include "signing/auth.h"
#include "signing/checksum.h"
#include "signing/chunked.h"
#include "signing/sigv4.h"
#include "signing/uri.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

enum body_mode {
    BODY_NONE = 0,  /* no request body */
    BODY_UNSIGNED,  /* UNSIGNED-PAYLOAD, presigned or anonymous: bytes pass as they are */
    BODY_HEX,       /* x-amz-content-sha256 is the payload's hex SHA-256 */
    BODY_CHUNKED,   /* aws-chunked, decoded by signing/chunked.c */
};

struct req {
    struct worker *w;                 /* owning worker (borrowed) */
    struct proxy_conf *cf;            /* config this request runs under (one ref) */
    const struct req_fe_ops *ops;     /* front end callbacks (borrowed) */
    void *fe;                         /* front end state; NULL once released */
    struct pool pool;                 /* every transient string of this request */
    char id[24];                      /* request id, also sent as x-amz-request-id */
    const char *proto;                /* "HTTP/1.1" / "HTTP/2" (static) */
    char *client;                     /* client address (pool) */

    /* request */
    struct slice method;              /* pool copy */
    struct http_header *hdrs;         /* pool copies of the request headers */
    size_t nhdrs;
    struct s3_addr addr;              /* bucket, key, op (pool) */
    char *resource;                   /* "/bucket/key" for error bodies and logs (pool) */
    const char *access_key;           /* for logs; "-" when anonymous (pool) */
    int64_t content_length;           /* as sent by the client, -1 unknown */
    int has_body;                     /* body bytes may follow */

    /* body pipeline */
    enum body_mode mode;              /* how the body is verified / decoded */
    EVP_MD_CTX *sha;                  /* running SHA-256 for BODY_HEX (owned) */
    char want_sha[65];                /* expected hex SHA-256 (lowercase) */
    struct chunked *chunked;          /* aws-chunked decoder (owned) */
    struct checksum hdr_sum;          /* x-amz-checksum-* sent as a header, to verify */
    const char *hdr_sum_value;        /* its expected base64 value (pool) */
    int64_t up_length;                /* Content-Length sent to the store; -1 none */
    int64_t raw_in;                   /* body bytes received from the client */
    int64_t decoded;                  /* payload bytes after aws-chunked decoding */
    int64_t sent_up;                  /* bytes handed to curl */
    size_t raw_uncredited;            /* raw bytes not yet reported through consumed() */
    struct evbuffer *upbuf;           /* decoded payload waiting for curl (owned) */
    unsigned body_ended : 1;          /* req_body_end() seen */
    unsigned body_verified : 1;       /* whole body verified: the last byte may go */
    unsigned body_paused : 1;         /* pause_body() sent to the front end */

    /* store transfer */
    struct upstream_xfer *xfer;       /* live transfer, NULL when none */
    struct event *io_timer;           /* upstream_io_timeout watchdog (owned) */
    int resp_paused;                  /* waiting for the client to drain */
    int status;                       /* response status sent to the client */
    struct http_header *resp_hdrs;    /* response headers from the store (pool) */
    size_t nresp, capresp;
    int64_t resp_length;              /* Content-Length from the store, -1 unknown */
    unsigned head_sent : 1;           /* send_head() called */
    struct evbuffer *out;             /* scratch for send_body (owned) */

    /* log */
    int64_t t_start_us;               /* req_create() */
    int64_t upstream_us;              /* time to the store's response head */
    int64_t bytes_out;                /* response body bytes */
    const char *err_code;             /* S3 error code we sent, or NULL */
};

static const struct upstream_xfer_ops xfer_ops;

/* ---- lifetime ------------------------------------------------------------------------------ */

struct req *
req_create(struct worker *w, const struct req_fe_ops *ops, void *fe)
{
    struct req *r = xcalloc(1, sizeof(*r));

    r->w = w;
    r->cf = proxy_conf_ref(w->cf);
    r->ops = ops;
    r->fe = fe;
    pool_init(&r->pool);
    worker_request_id(w, r->id);
    r->t_start_us = timeutil_mono_us();
    r->content_length = -1;
    r->up_length = -1;
    r->resp_length = -1;
    r->access_key = "-";
    r->upbuf = evbuffer_new();
    r->out = evbuffer_new();
    return r;
}

static void
req_log(struct req *r)
{
    struct accesslog_entry e = {
        .request_id = r->id,
        .client = r->client,
        .proto = r->proto,
        .access_key = r->access_key,
        .method = r->method,
        .bucket = r->addr.bucket,
        .key = r->addr.key,
        .op = s3_op_name(r->addr.op),
        .status = r->status,
        .error_code = r->err_code,
        .bytes_in = r->raw_in,
        .bytes_out = r->bytes_out,
        .upstream_us = r->upstream_us,
        .total_us = timeutil_mono_us() - r->t_start_us,
    };

    accesslog_write(r->w->srv, &e);
}

static void
req_maybe_free(struct req *r)
{
    if (r->fe != NULL || r->xfer != NULL) {
        return;
    }
    req_log(r);
    if (r->io_timer != NULL) {
        event_free(r->io_timer);
    }
    if (r->sha != NULL) {
        EVP_MD_CTX_free(r->sha);
    }
    if (r->chunked != NULL) {
        chunked_deinit(r->chunked);
        free(r->chunked);
    }
    checksum_deinit(&r->hdr_sum);
    evbuffer_free(r->upbuf);
    evbuffer_free(r->out);
    pool_deinit(&r->pool);
    proxy_conf_unref(r->cf);
    free(r);
}

/* Hands the front end back: after this no fe callback is made. */
static void
release_fe(struct req *r, int ok)
{
    void *fe = r->fe;

    if (fe == NULL) {
        return;
    }
    r->fe = NULL;
    if (ok) {
        r->ops->send_end(fe);
    } else {
        r->ops->abort(fe);
    }
}

static void
cancel_xfer(struct req *r)
{
    if (r->xfer != NULL) {
        upstream_abort(r->xfer);
        r->xfer = NULL;
    }
    if (r->io_timer != NULL) {
        evtimer_del(r->io_timer);
    }
}

/*
 * Answers with an S3 error (or, when the head already went out, aborts the response) and
 * cancels the store transfer, so an unverified body is never committed.
 */
static void
fail(struct req *r, enum s3err e, const char *message)
{
    struct http_header h[2];
    size_t len;
    char *body;

    cancel_xfer(r);
    if (r->fe == NULL) {
        return;
    }
    r->err_code = s3err_code(e);
    if (r->head_sent) {
        log_warn("req", "%s %s bucket=%.*s key=%.*s: %s after the response started; aborting",
                 r->id, s3err_code(e), SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key),
                 message ? message : s3err_default_message(e));
        release_fe(r, 0);
        return;
    }
    r->status = s3err_status(e);
    body = s3err_xml(&r->pool, e, message, r->resource, r->id, &len);
    h[0] = (struct http_header){SLICE_LIT("Content-Type"), SLICE_LIT("application/xml")};
    h[1] = (struct http_header){SLICE_LIT("x-amz-request-id"), slice_cstr(r->id)};
    r->head_sent = 1;
    r->ops->send_head(r->fe, r->status, h, 2, (int64_t)len);
    evbuffer_add(r->out, body, len);
    r->ops->send_body(r->fe, r->out);
    release_fe(r, 1);
}

/* ---- helpers ------------------------------------------------------------------------------- */

static const struct http_header *
find_hdr(const struct req *r, const char *name)
{
    struct slice n = slice_cstr(name);
    size_t i;

    for (i = 0; i < r->nhdrs; i++) {
        if (slice_eq_nocase(r->hdrs[i].name, n)) {
            return &r->hdrs[i];
        }
    }
    return NULL;
}

static struct slice
hdr_value(const struct req *r, const char *name)
{
    const struct http_header *h = find_hdr(r, name);

    return h ? h->value : SLICE_NULL;
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

/* Headers never passed to the store: hop-by-hop, or rewritten by the proxy. */
static int
drop_request_header(struct slice name)
{
    static const struct slice drop[] = {
        SLICE_LIT("host"),           SLICE_LIT("authorization"),
        SLICE_LIT("x-amz-date"),     SLICE_LIT("x-amz-content-sha256"),
        SLICE_LIT("content-length"), SLICE_LIT("transfer-encoding"),
        SLICE_LIT("connection"),     SLICE_LIT("keep-alive"),
        SLICE_LIT("proxy-connection"), SLICE_LIT("te"),
        SLICE_LIT("trailer"),        SLICE_LIT("upgrade"),
        SLICE_LIT("expect"),         SLICE_LIT("x-amz-decoded-content-length"),
        SLICE_LIT("x-amz-trailer"),  SLICE_LIT("http2-settings"),
        SLICE_LIT("x-amz-security-token"),
    };
    size_t i;

    for (i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        if (slice_eq_nocase(name, drop[i])) {
            return 1;
        }
    }
    return 0;
}

static int
drop_response_header(struct slice name)
{
    static const struct slice drop[] = {
        SLICE_LIT("connection"), SLICE_LIT("keep-alive"),    SLICE_LIT("transfer-encoding"),
        SLICE_LIT("proxy-connection"), SLICE_LIT("te"),       SLICE_LIT("trailer"),
        SLICE_LIT("upgrade"),    SLICE_LIT("content-length"),
    };
    size_t i;

    for (i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        if (slice_eq_nocase(name, drop[i])) {
            return 1;
        }
    }
    return 0;
}

static int
is_presign_param(struct slice name)
{
    static const struct slice names[] = {
        SLICE_LIT("X-Amz-Algorithm"),     SLICE_LIT("X-Amz-Credential"), SLICE_LIT("X-Amz-Date"),
        SLICE_LIT("X-Amz-Expires"),       SLICE_LIT("X-Amz-SignedHeaders"),
        SLICE_LIT("X-Amz-Signature"),     SLICE_LIT("X-Amz-Security-Token"),
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (slice_eq_nocase(name, names[i])) {
            return 1;
        }
    }
    return 0;
}

/* ---- authentication ------------------------------------------------------------------------ */

struct auth_out {
    struct sigv4_auth a;              /* what the client sent */
    const uint8_t *key;               /* derived signing key (cache-owned) */
    char seed[65];                    /* the request signature, seed for aws-chunked */
};

static int
public_read_allowed(const struct req *r)
{
    const struct proxy_bucket_rule *rule;

    if (r->addr.op != S3_OP_GET_OBJECT && r->addr.op != S3_OP_HEAD_OBJECT) {
        return 0;
    }
    rule = proxy_conf_bucket(r->cf, r->addr.bucket.ptr, r->addr.bucket.len);
    return rule != NULL && rule->public_read;
}

/* Checks one candidate canonical URI; 1 when the signature matches. */
static int
signature_matches(struct req *r, struct auth_out *ao, struct slice canonical_uri,
                  struct slice payload_hash, const char **errstr)
{
    struct sigv4_request sr;
    struct sigv4_header *sh = pool_alloc(&r->pool, sizeof(*sh) * (r->nhdrs ? r->nhdrs : 1));
    char *creq, *sts;
    char sig[65];
    size_t i;

    for (i = 0; i < r->nhdrs; i++) {
        sh[i].name = r->hdrs[i].name;
        sh[i].value = r->hdrs[i].value;
    }
    sr.method = r->method;
    sr.canonical_uri = canonical_uri;
    sr.query = r->addr.raw_query;
    sr.headers = sh;
    sr.nheaders = r->nhdrs;
    sr.payload_hash = payload_hash;
    creq = sigv4_canonical_request(&r->pool, &sr, ao->a.signed_headers, ao->a.presigned, errstr);
    if (creq == NULL) {
        return 0;
    }
    sts = sigv4_string_to_sign(&r->pool, ao->a.amz_date, ao->a.scope, creq);
    sigv4_sign(ao->key, sts, sig);
    log_debug("auth", "%s canonical request:\n%s", r->id, creq);
    if (ct_equal(sig, 64, ao->a.signature.ptr, ao->a.signature.len)) {
        memcpy(ao->seed, sig, 65);
        return 1;
    }
    return 0;
}

static int
authenticate(struct req *r, struct auth_out *ao)
{
    struct slice authz = hdr_value(r, "authorization");
    const struct creds_entry *ce;
    const char *errstr = NULL;
    struct slice payload_hash, uri_raw, uri_canon, decoded;
    time_t t;
    int64_t now_s = timeutil_now_ms() / 1000;
    int rc;

    memset(ao, 0, sizeof(*ao));
    if (authz.ptr != NULL) {
        struct slice amz_date = hdr_value(r, "x-amz-date");

        if (amz_date.ptr == NULL) {
            amz_date = hdr_value(r, "date");
        }
        if (slice_starts_with(authz, SLICE_LIT("AWS "))) {
            fail(r, S3ERR_SIGNATURE_MISMATCH,
                 "Signature Version 2 is not supported; sign requests with AWS4-HMAC-SHA256.");
            return -1;
        }
        if (!slice_starts_with(authz, SLICE_LIT("AWS4-HMAC-SHA256"))) {
            fail(r, S3ERR_INVALID_ARGUMENT, "Unsupported Authorization Type");
            return -1;
        }
        if (auth_parse_header(authz, amz_date, &ao->a, &errstr) != 0) {
            fail(r, S3ERR_AUTH_HEADER_MALFORMED, errstr);
            return -1;
        }
    } else {
        rc = auth_parse_presigned(&r->pool, r->addr.raw_query, &ao->a, &errstr);
        if (rc < 0) {
            fail(r, S3ERR_AUTH_QUERY_MALFORMED, errstr);
            return -1;
        }
        if (rc == 1) {
            if (auth_query_is_sigv2(r->addr.raw_query)) {
                fail(r, S3ERR_SIGNATURE_MISMATCH,
                     "Signature Version 2 is not supported; presign with AWS4-HMAC-SHA256.");
                return -1;
            }
            if (public_read_allowed(r)) {
                return 0;
            }
            fail(r, S3ERR_ACCESS_DENIED, NULL);
            return -1;
        }
    }
    ce = creds_find_client(r->cf->creds, ao->a.access_key);
    if (ce == NULL) {
        fail(r, S3ERR_INVALID_ACCESS_KEY, NULL);
        return -1;
    }
    r->access_key = pool_strndup(&r->pool, ao->a.access_key.ptr, ao->a.access_key.len);
    if (!slice_eq(ao->a.service, SLICE_LIT("s3"))) {
        fail(r, ao->a.presigned ? S3ERR_AUTH_QUERY_MALFORMED : S3ERR_AUTH_HEADER_MALFORMED,
             pool_printf(&r->pool, "The authorization header is malformed; incorrect service "
                                   "'%.*s'. This endpoint belongs to 's3'.",
                         SLICE_ARGS(ao->a.service)));
        return -1;
    }
    if (!slice_eq(ao->a.region, slice_cstr(r->cf->region))) {
        fail(r, ao->a.presigned ? S3ERR_AUTH_QUERY_MALFORMED : S3ERR_AUTH_HEADER_MALFORMED,
             pool_printf(&r->pool,
                         "The authorization header is malformed; the region '%.*s' is wrong; "
                         "expecting '%s'",
                         SLICE_ARGS(ao->a.region), r->cf->region));
        return -1;
    }
    if (timeutil_parse_amz_date(ao->a.amz_date, &t) != 0) {
        fail(r, ao->a.presigned ? S3ERR_AUTH_QUERY_MALFORMED : S3ERR_ACCESS_DENIED,
             "AWS authentication requires a valid Date or x-amz-date header");
        return -1;
    }
    if (ao->a.presigned) {
        if (now_s > (int64_t)t + ao->a.expires) {
            fail(r, S3ERR_ACCESS_DENIED, "Request has expired");
            return -1;
        }
        if ((int64_t)t - now_s > r->cf->max_clock_skew_ms / 1000) {
            fail(r, S3ERR_ACCESS_DENIED, "Request is not valid yet");
            return -1;
        }
        payload_hash = SLICE_LIT("UNSIGNED-PAYLOAD");
    } else {
        int64_t skew = (int64_t)t - now_s;

        if (skew > r->cf->max_clock_skew_ms / 1000 || -skew > r->cf->max_clock_skew_ms / 1000) {
            fail(r, S3ERR_TIME_SKEWED, NULL);
            return -1;
        }
        payload_hash = hdr_value(r, "x-amz-content-sha256");
        if (payload_hash.ptr == NULL) {
            fail(r, S3ERR_INVALID_REQUEST,
                 "Missing required header for this request: x-amz-content-sha256");
            return -1;
        }
    }
    ao->key = sigv4_key_cache_get(&r->w->keys, ao->a.access_key, slice_cstr(ce->secret),
                                  ao->a.date8, ao->a.region, ao->a.service);
    /* Clients sign the path as they encoded it; most encode it the way S3 does, which is
     * our re-encoding of the decoded path. Try that first, then the bytes as sent. */
    uri_raw = r->addr.raw_path;
    if (uri_decode_pool(&r->pool, uri_raw, 0, &decoded) == 0) {
        uri_canon = slice_cstr(uri_encode_pool(&r->pool, decoded, 1));
    } else {
        uri_canon = uri_raw;
    }
    if (!signature_matches(r, ao, uri_canon, payload_hash, &errstr) &&
        (slice_eq(uri_canon, uri_raw) ||
         !signature_matches(r, ao, uri_raw, payload_hash, &errstr))) {
        if (errstr != NULL) {
            fail(r, S3ERR_AUTH_HEADER_MALFORMED, errstr);
        } else {
            log_info("auth", "%s signature mismatch access_key=%s bucket=%.*s key=%.*s", r->id,
                     r->access_key, SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key));
            fail(r, S3ERR_SIGNATURE_MISMATCH, NULL);
        }
        return -1;
    }
    if (r->addr.bucket.len > 0 && !creds_bucket_allowed(ce, r->addr.bucket)) {
        fail(r, S3ERR_ACCESS_DENIED, NULL);
        return -1;
    }
    return 1;
}

/* ---- body mode ------------------------------------------------------------------------------- */

static int
setup_body(struct req *r, const struct auth_out *ao, int signed_request)
{
    struct slice sha = hdr_value(r, "x-amz-content-sha256");
    size_t i;

    r->mode = BODY_UNSIGNED;
    if (signed_request && !ao->a.presigned) {
        enum chunked_mode cm;

        if (is_hex64(sha)) {
            r->mode = BODY_HEX;
            for (i = 0; i < 64; i++) {
                r->want_sha[i] = (char)tolower((unsigned char)sha.ptr[i]);
            }
            r->want_sha[64] = '\0';
        } else if (slice_eq(sha, SLICE_LIT("UNSIGNED-PAYLOAD"))) {
            r->mode = BODY_UNSIGNED;
        } else if (slice_eq(sha, SLICE_LIT("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")) ||
                   slice_eq(sha, SLICE_LIT("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")) ||
                   slice_eq(sha, SLICE_LIT("STREAMING-UNSIGNED-PAYLOAD-TRAILER"))) {
            struct slice dcl = hdr_value(r, "x-amz-decoded-content-length");
            uint64_t n;

            if (slice_eq(sha, SLICE_LIT("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"))) {
                cm = CHUNKED_SIGNED;
            } else if (slice_eq(sha, SLICE_LIT("STREAMING-UNSIGNED-PAYLOAD-TRAILER"))) {
                cm = CHUNKED_UNSIGNED_TRAILER;
            } else {
                cm = CHUNKED_SIGNED_TRAILER;
            }
            if (dcl.ptr == NULL || slice_to_u64(dcl, &n) != 0 || n > INT64_MAX) {
                fail(r, S3ERR_MISSING_CONTENT_LENGTH,
                     "aws-chunked uploads need the x-amz-decoded-content-length header.");
                return -1;
            }
            r->mode = BODY_CHUNKED;
            r->up_length = (int64_t)n;
            r->chunked = xcalloc(1, sizeof(*r->chunked));
            chunked_init(r->chunked, cm, ao->key, slice_make(ao->seed, 64), ao->a.amz_date,
                         ao->a.scope, hdr_value(r, "x-amz-trailer"));
        } else {
            fail(r, S3ERR_INVALID_ARGUMENT,
                 "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                 "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
                 "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.");
            return -1;
        }
    }
    if (r->mode != BODY_CHUNKED) {
        if (r->has_body && r->content_length < 0) {
            fail(r, S3ERR_MISSING_CONTENT_LENGTH, NULL);
            return -1;
        }
        /* a "Content-Length: 0" on GET/HEAD/DELETE is not a body: sending one would make
         * curl turn the request into an upload */
        int takes_body =
            slice_eq(r->method, SLICE_LIT("PUT")) || slice_eq(r->method, SLICE_LIT("POST"));

        r->up_length = -1;
        if (r->has_body || takes_body) {
            r->up_length = r->content_length > 0 ? r->content_length : 0;
        }
    }
    if (r->mode == BODY_HEX) {
        r->sha = EVP_MD_CTX_new();
        EVP_DigestInit_ex(r->sha, EVP_sha256(), NULL);
    }
    /* a checksum sent as a header is verified here too: the store may not check it */
    for (i = 0; i < r->nhdrs; i++) {
        enum checksum_alg alg = checksum_alg_from_header(r->hdrs[i].name);

        if (alg != CHECKSUM_NONE) {
            checksum_init(&r->hdr_sum, alg);
            r->hdr_sum_value = pool_strndup(&r->pool, r->hdrs[i].value.ptr, r->hdrs[i].value.len);
            break;
        }
    }
    return 0;
}

/* ---- the store request ----------------------------------------------------------------------- */

static char *
upstream_query(struct req *r)
{
    struct evbuffer *b = evbuffer_new();
    size_t i, len;
    char *q;
    int first = 1;

    for (i = 0; i < r->addr.nparams; i++) {
        const struct s3_param *p = &r->addr.params[i];

        if (is_presign_param(p->name)) {
            continue;
        }
        evbuffer_add_printf(b, "%s%s", first ? "" : "&", uri_encode_pool(&r->pool, p->name, 0));
        if (p->has_value) {
            evbuffer_add_printf(b, "=%s", uri_encode_pool(&r->pool, p->value, 0));
        }
        first = 0;
    }
    len = evbuffer_get_length(b);
    q = pool_alloc(&r->pool, len + 1);
    evbuffer_remove(b, q, len);
    q[len] = '\0';
    evbuffer_free(b);
    return q;
}

static int
cmp_header_name(const void *a, const void *b)
{
    const struct sigv4_header *x = a, *y = b;

    return slice_cmp(x->name, y->name);
}

static struct slice
lower_dup(struct pool *p, struct slice s)
{
    char *d = pool_strndup(p, s.ptr, s.len);
    size_t i;

    for (i = 0; i < s.len; i++) {
        d[i] = (char)tolower((unsigned char)d[i]);
    }
    return slice_make(d, s.len);
}

static int
start_upstream(struct req *r)
{
    const struct creds_entry *store = creds_store(r->cf->creds);
    const char *hostport = strstr(r->cf->upstream, "://");
    struct sigv4_header *sh;
    struct sigv4_request sr;
    struct upstream_xfer_args xa;
    const char **lines;
    char amz_date[TIMEUTIL_AMZ_LEN], date8[9], sig[65];
    char *path, *query, *signed_list, *creq, *sts, *scope;
    const char *payload, *errstr = NULL;
    const uint8_t *key;
    size_t n = 0, i, sl;

    hostport = hostport ? hostport + 3 : r->cf->upstream;
    sh = pool_alloc(&r->pool, sizeof(*sh) * (r->nhdrs + 4));
    sh[n++] = (struct sigv4_header){SLICE_LIT("host"),
                                    slice_make(hostport, strcspn(hostport, "/"))};
    timeutil_amz_date((time_t)(timeutil_now_ms() / 1000), amz_date);
    memcpy(date8, amz_date, 8);
    date8[8] = '\0';
    sh[n++] = (struct sigv4_header){SLICE_LIT("x-amz-date"), slice_cstr(pool_strndup(&r->pool, amz_date, 16))};
    /* a client's hex digest is passed on so the store checks it too; anything streamed
     * (aws-chunked, unsigned) goes as UNSIGNED-PAYLOAD, verified by us */
    if (r->mode == BODY_HEX) {
        payload = r->want_sha;
    } else if (r->up_length < 0) {
        payload = EMPTY_SHA256;
    } else {
        payload = "UNSIGNED-PAYLOAD";
    }
    sh[n++] = (struct sigv4_header){SLICE_LIT("x-amz-content-sha256"), slice_cstr(payload)};
    for (i = 0; i < r->nhdrs; i++) {
        struct slice name = r->hdrs[i].name, value = r->hdrs[i].value;

        if (drop_request_header(name)) {
            continue;
        }
        if (r->mode == BODY_CHUNKED && slice_eq_nocase(name, SLICE_LIT("content-encoding"))) {
            /* "aws-chunked" is our framing, not the object's encoding */
            struct slice v = slice_trim(value);

            if (slice_starts_with_nocase(v, SLICE_LIT("aws-chunked"))) {
                v.ptr += 11;
                v.len -= 11;
                while (v.len && (v.ptr[0] == ',' || v.ptr[0] == ' ')) {
                    v.ptr++;
                    v.len--;
                }
            }
            if (v.len == 0) {
                continue;
            }
            value = v;
        }
        if (r->mode == BODY_CHUNKED && r->chunked != NULL &&
            slice_eq_nocase(name, SLICE_LIT("x-amz-sdk-checksum-algorithm"))) {
            continue; /* the checksum itself arrives in the trailer, which we consume */
        }
        sh[n++] = (struct sigv4_header){lower_dup(&r->pool, name), value};
    }
    qsort(sh, n, sizeof(*sh), cmp_header_name);
    /* signed: every header we send (names are unique per S3 semantics; repeated ones join) */
    sl = 0;
    for (i = 0; i < n; i++) {
        sl += sh[i].name.len + 1;
    }
    signed_list = pool_alloc(&r->pool, sl + 1);
    sl = 0;
    for (i = 0; i < n; i++) {
        if (i > 0 && slice_eq(sh[i].name, sh[i - 1].name)) {
            continue;
        }
        if (sl) {
            signed_list[sl++] = ';';
        }
        memcpy(signed_list + sl, sh[i].name.ptr, sh[i].name.len);
        sl += sh[i].name.len;
    }
    signed_list[sl] = '\0';

    path = s3addr_upstream_path(&r->pool, &r->addr);
    query = upstream_query(r);
    sr.method = r->method;
    sr.canonical_uri = slice_cstr(path);
    sr.query = slice_cstr(query);
    sr.headers = sh;
    sr.nheaders = n;
    sr.payload_hash = slice_cstr(payload);
    creq = sigv4_canonical_request(&r->pool, &sr, slice_make(signed_list, sl), 0, &errstr);
    if (creq == NULL) {
        log_error("req", "%s cannot sign for the store bucket=%.*s key=%.*s: %s", r->id,
                  SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key), errstr);
        fail(r, S3ERR_INTERNAL_ERROR, NULL);
        return -1;
    }
    scope = pool_printf(&r->pool, "%s/%s/s3/aws4_request", date8, r->cf->upstream_region);
    sts = sigv4_string_to_sign(&r->pool, slice_make(amz_date, 16), slice_cstr(scope), creq);
    key = sigv4_key_cache_get(&r->w->keys, slice_cstr(store->access_key),
                              slice_cstr(store->secret), slice_make(date8, 8),
                              slice_cstr(r->cf->upstream_region), SLICE_LIT("s3"));
    sigv4_sign(key, sts, sig);

    lines = pool_alloc(&r->pool, sizeof(*lines) * (n + 2));
    for (i = 0; i < n; i++) {
        lines[i] = pool_printf(&r->pool, "%.*s: %.*s", SLICE_ARGS(sh[i].name),
                               SLICE_ARGS(sh[i].value));
    }
    lines[n] = pool_printf(&r->pool,
                           "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                           "Signature=%s",
                           store->access_key, scope, signed_list, sig);
    lines[n + 1] = NULL;
    xa.method = pool_strndup(&r->pool, r->method.ptr, r->method.len);
    xa.path_query = query[0] ? pool_printf(&r->pool, "%s?%s", path, query) : path;
    xa.headers = lines;
    xa.body_length = r->up_length;
    r->xfer = upstream_start(r->w->up, &xa, &xfer_ops, r);
    if (r->xfer == NULL) {
        fail(r, S3ERR_INTERNAL_ERROR, NULL);
        return -1;
    }
    return 0;
}

/* ---- watchdog -------------------------------------------------------------------------------- */

static void
on_io_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct req *r = arg;
    struct timeval tv;

    (void)fd;
    (void)what;
    if (r->xfer == NULL) {
        return;
    }
    /* waiting on the client (body not complete, nothing buffered, or client not reading)
     * is the front end's timeout to enforce, not the store's */
    if ((!r->body_ended && evbuffer_get_length(r->upbuf) == 0) || r->resp_paused) {
        tv.tv_sec = r->cf->upstream_io_timeout_ms / 1000;
        tv.tv_usec = (r->cf->upstream_io_timeout_ms % 1000) * 1000;
        evtimer_add(r->io_timer, &tv);
        return;
    }
    log_warn("req", "%s store stalled for %lldms bucket=%.*s key=%.*s", r->id,
             (long long)r->cf->upstream_io_timeout_ms, SLICE_ARGS(r->addr.bucket),
             SLICE_ARGS(r->addr.key));
    fail(r, S3ERR_SERVICE_UNAVAILABLE, "The storage backend did not answer in time.");
    req_maybe_free(r);
}

static void
touch(struct req *r)
{
    int64_t ms = r->head_sent ? r->cf->upstream_io_timeout_ms : r->cf->upstream_first_byte_timeout_ms;
    struct timeval tv;

    if (r->xfer == NULL) {
        return;
    }
    if (ms < r->cf->upstream_io_timeout_ms) {
        ms = r->cf->upstream_io_timeout_ms;
    }
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    if (r->io_timer == NULL) {
        r->io_timer = evtimer_new(r->w->evb, on_io_timeout, r);
    }
    evtimer_add(r->io_timer, &tv);
}

/* ---- front end entry points ------------------------------------------------------------------ */

void
req_start(struct req *r, const struct req_start_args *a)
{
    struct auth_out ao;
    const char *code = NULL, *msg = NULL;
    size_t i;
    int signed_request;

    r->proto = a->proto;
    r->client = pool_strndup(&r->pool, a->client_addr, strlen(a->client_addr));
    r->method = pool_slice_dup(&r->pool, a->method);
    r->content_length = a->content_length;
    r->has_body = a->has_body;
    r->raw_in = 0;
    r->hdrs = pool_alloc(&r->pool, sizeof(*r->hdrs) * (a->nhdrs ? a->nhdrs : 1));
    for (i = 0; i < a->nhdrs; i++) {
        r->hdrs[i].name = pool_slice_dup(&r->pool, a->hdrs[i].name);
        r->hdrs[i].value = pool_slice_dup(&r->pool, a->hdrs[i].value);
    }
    r->nhdrs = a->nhdrs;
    {
        long q = slice_index(a->target, '?');

        r->resource = pool_strndup(&r->pool, a->target.ptr, q >= 0 ? (size_t)q : a->target.len);
    }
    if (s3addr_parse(&r->pool, r->method, pool_slice_dup(&r->pool, a->target),
                     pool_slice_dup(&r->pool, a->authority), r->cf->virtual_host_domains,
                     r->cf->nvirtual_host_domains,
                     find_hdr(r, "x-amz-copy-source") != NULL ? S3ADDR_COPY_SOURCE : 0, &r->addr,
                     &code, &msg) != 0) {
        r->status = 400;
        fail(r, s3err_from_code(code), msg);
        req_maybe_free(r);
        return;
    }
    if (r->addr.op == S3_OP_POST_OBJECT) {
        fail(r, S3ERR_NOT_IMPLEMENTED, "Browser-based POST uploads are not supported.");
        req_maybe_free(r);
        return;
    }
    signed_request = authenticate(r, &ao);
    if (signed_request < 0 || setup_body(r, &ao, signed_request) != 0 || start_upstream(r) != 0) {
        req_maybe_free(r);
        return;
    }
    log_debug("req", "%s %.*s bucket=%.*s key=%.*s op=%s -> store", r->id, SLICE_ARGS(r->method),
              SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key), s3_op_name(r->addr.op));
    touch(r);
    if (a->expect_continue && r->has_body && r->fe != NULL) {
        r->ops->send_continue(r->fe);
    }
    if (!r->has_body) {
        r->body_ended = 1;
        r->body_verified = 1;
    }
}

static void
credit_client(struct req *r)
{
    if (r->raw_uncredited > 0 && r->fe != NULL &&
        evbuffer_get_length(r->upbuf) < (size_t)r->cf->max_inflight_body / 2) {
        size_t n = r->raw_uncredited;

        r->raw_uncredited = 0;
        r->ops->consumed(r->fe, n);
    }
    if (r->body_paused && r->fe != NULL &&
        evbuffer_get_length(r->upbuf) < (size_t)r->cf->max_inflight_body / 2) {
        r->body_paused = 0;
        r->ops->resume_body(r->fe);
    }
}

static int
add_payload(struct req *r, const char *p, size_t n)
{
    if (n == 0) {
        return 0;
    }
    r->decoded += (int64_t)n;
    if (r->up_length >= 0 && r->decoded > r->up_length) {
        fail(r, S3ERR_INCOMPLETE_BODY, "The request body is longer than its declared length.");
        return -1;
    }
    if (r->sha != NULL) {
        EVP_DigestUpdate(r->sha, p, n);
    }
    if (r->hdr_sum.alg != CHECKSUM_NONE) {
        checksum_update(&r->hdr_sum, p, n);
    }
    evbuffer_add(r->upbuf, p, n);
    return 0;
}

void
req_body(struct req *r, const char *data, size_t len)
{
    if (r->fe == NULL || r->body_ended) {
        return;
    }
    r->raw_in += (int64_t)len;
    r->raw_uncredited += len;
    if (r->mode == BODY_CHUNKED) {
        while (len > 0) {
            size_t used = 0;
            struct slice pl = SLICE_NULL;
            int rc = chunked_feed(r->chunked, (const uint8_t *)data, len, &used, &pl);

            if (rc == PX_EAGAIN) {
                break;
            }
            if (rc != PX_OK) {
                enum s3err e = rc == PX_EBADSIG
                                   ? (r->chunked->checksum_mismatch ? S3ERR_BAD_DIGEST
                                                                    : S3ERR_SIGNATURE_MISMATCH)
                                   : S3ERR_INCOMPLETE_BODY;

                log_info("req", "%s aws-chunked body rejected bucket=%.*s key=%.*s: %s", r->id,
                         SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key),
                         r->chunked->errstr ? r->chunked->errstr : s3err_code(e));
                fail(r, e, rc == PX_EBADSIG ? NULL : r->chunked->errstr);
                req_maybe_free(r);
                return;
            }
            if (add_payload(r, pl.ptr, pl.len) != 0) {
                req_maybe_free(r);
                return;
            }
            data += used;
            len -= used;
        }
    } else if (add_payload(r, data, len) != 0) {
        req_maybe_free(r);
        return;
    }
    if (!r->body_paused && evbuffer_get_length(r->upbuf) >= (size_t)r->cf->max_inflight_body) {
        r->body_paused = 1;
        r->ops->pause_body(r->fe);
    }
    if (r->xfer != NULL) {
        upstream_resume_body(r->xfer);
    }
}

void
req_body_end(struct req *r)
{
    if (r->fe == NULL || r->body_ended) {
        return;
    }
    r->body_ended = 1;
    if (r->mode == BODY_HEX) {
        unsigned char md[32];
        char hex[65];
        unsigned int mdlen = 0;

        EVP_DigestFinal_ex(r->sha, md, &mdlen);
        hex_lower(md, 32, hex);
        if (strcmp(hex, r->want_sha) != 0) {
            log_info("req", "%s payload SHA-256 mismatch bucket=%.*s key=%.*s", r->id,
                     SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key));
            fail(r, S3ERR_SHA256_MISMATCH, NULL);
            req_maybe_free(r);
            return;
        }
    }
    if (r->mode == BODY_CHUNKED && !chunked_done(r->chunked)) {
        fail(r, S3ERR_INCOMPLETE_BODY, "The aws-chunked body ended before its final chunk.");
        req_maybe_free(r);
        return;
    }
    if (r->up_length >= 0 && r->decoded != r->up_length) {
        fail(r, S3ERR_INCOMPLETE_BODY, NULL);
        req_maybe_free(r);
        return;
    }
    if (r->hdr_sum.alg != CHECKSUM_NONE) {
        char got[64];

        checksum_final_base64(&r->hdr_sum, got);
        if (strcmp(got, r->hdr_sum_value) != 0) {
            fail(r, S3ERR_BAD_DIGEST,
                 pool_printf(&r->pool, "The %s you specified did not match the calculated "
                                       "checksum.",
                             checksum_header_name(r->hdr_sum.alg)));
            req_maybe_free(r);
            return;
        }
    }
    r->body_verified = 1;
    if (r->xfer != NULL) {
        touch(r);
        upstream_resume_body(r->xfer);
    }
}

void
req_client_writable(struct req *r)
{
    if (r->xfer != NULL && r->resp_paused) {
        r->resp_paused = 0;
        touch(r);
        upstream_resume_response(r->xfer);
    }
}

void
req_client_gone(struct req *r)
{
    if (r->fe == NULL) {
        return;
    }
    r->fe = NULL;
    if (r->status == 0) {
        r->status = 499; /* nginx's "client closed request", for the log */
    }
    if (r->xfer != NULL) {
        log_info("req", "%s client went away during %s bucket=%.*s key=%.*s; store request "
                        "aborted",
                 r->id, s3_op_name(r->addr.op), SLICE_ARGS(r->addr.bucket),
                 SLICE_ARGS(r->addr.key));
    }
    cancel_xfer(r);
    req_maybe_free(r);
}

/* ---- store transfer callbacks ---------------------------------------------------------------- */

static size_t
xfer_read_body(void *arg, char *buf, size_t max)
{
    struct req *r = arg;
    size_t avail = evbuffer_get_length(r->upbuf);
    int n;

    if (!r->body_verified) {
        avail = avail > 0 ? avail - 1 : 0; /* the fence: the last byte waits for verification */
    }
    if (avail == 0) {
        if (r->body_verified && r->sent_up == r->up_length) {
            return 0;
        }
        return UPSTREAM_PAUSE;
    }
    if (avail > max) {
        avail = max;
    }
    n = evbuffer_remove(r->upbuf, buf, avail);
    if (n <= 0) {
        return UPSTREAM_PAUSE;
    }
    r->sent_up += n;
    touch(r);
    credit_client(r);
    return (size_t)n;
}

static void
xfer_on_header(void *arg, struct slice name, struct slice value)
{
    struct req *r = arg;

    if (slice_eq_nocase(name, SLICE_LIT("content-length"))) {
        uint64_t n;

        if (slice_to_u64(value, &n) == 0 && n <= INT64_MAX) {
            r->resp_length = (int64_t)n;
        }
        return;
    }
    if (drop_response_header(name)) {
        return;
    }
    if (r->nresp == r->capresp) {
        struct http_header *nh;

        r->capresp = r->capresp ? r->capresp * 2 : 16;
        nh = pool_alloc(&r->pool, sizeof(*nh) * r->capresp);
        if (r->nresp) {
            memcpy(nh, r->resp_hdrs, sizeof(*nh) * r->nresp);
        }
        r->resp_hdrs = nh;
    }
    r->resp_hdrs[r->nresp].name = pool_slice_dup(&r->pool, name);
    r->resp_hdrs[r->nresp].value = pool_slice_dup(&r->pool, value);
    r->nresp++;
}

static void
xfer_on_head(void *arg, int status)
{
    struct req *r = arg;

    r->upstream_us = upstream_first_byte_us(r->xfer);
    touch(r);
    if (r->fe == NULL || r->head_sent) {
        return;
    }
    r->status = status;
    r->head_sent = 1;
    r->ops->send_head(r->fe, status, r->resp_hdrs, r->nresp, r->resp_length);
}

static int
xfer_on_body(void *arg, const char *data, size_t len)
{
    struct req *r = arg;

    if (r->fe == NULL) {
        return 0;
    }
    if (r->ops->pending(r->fe) >= REQ_CLIENT_HIGH_WATERMARK) {
        r->resp_paused = 1;
        return 1;
    }
    touch(r);
    r->bytes_out += (int64_t)len;
    evbuffer_add(r->out, data, len);
    r->ops->send_body(r->fe, r->out);
    return 0;
}

static void
xfer_on_done(void *arg, const char *errstr)
{
    struct req *r = arg;

    r->xfer = NULL;
    if (r->io_timer != NULL) {
        evtimer_del(r->io_timer);
    }
    if (errstr != NULL) {
        log_warn("req", "%s store request failed bucket=%.*s key=%.*s upstream=%s: %s", r->id,
                 SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key), r->cf->upstream, errstr);
        fail(r, S3ERR_SERVICE_UNAVAILABLE, "The storage backend is unavailable. Please retry.");
    } else if (!r->head_sent) {
        fail(r, S3ERR_SERVICE_UNAVAILABLE, "The storage backend sent no response.");
    } else if (r->resp_length >= 0 && r->bytes_out != r->resp_length &&
               !slice_eq(r->method, SLICE_LIT("HEAD")) && r->status != 304 && r->status != 204) {
        fail(r, S3ERR_INTERNAL_ERROR, "The storage backend sent a short response.");
    } else {
        release_fe(r, 1);
    }
    req_maybe_free(r);
}

static const struct upstream_xfer_ops xfer_ops = {
    .read_body = xfer_read_body,
    .on_header = xfer_on_header,
    .on_head = xfer_on_head,
    .on_body = xfer_on_body,
    .on_done = xfer_on_done,
};
