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
 * A replica write that wins a conflict over a write of this site keeps the loser first
 * (keep.h: a copy in the conflict bucket, or a version of a versioned bucket), between the
 * queue's go and UPSTREAM; if it cannot, 503 and the peer retries (repl_keep_loser).
 *
 * The fence: the store only commits a body once it has Content-Length bytes. We hand the
 * store every byte but the last until the whole body verified (payload SHA-256, chunk
 * signatures, trailer checksums, length). On any failure the transfer is aborted, its
 * connection dropped, and the store discards the partial upload.
 */
#include "proxy/req.h"

#include <assert.h>
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
#include "proxy/keep.h"
#include "proxy/peerop.h"
#include "proxy/s3addr.h"
#include "proxy/s3err.h"
#include "proxy/upsign.h"
#include "common/upstream.h"
#include "proxy/worker.h"
#include "proxy/xmlguard.h"
#include "queue/queue.h"

#include <hiredis/hiredis.h>
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
    unsigned expect_continue : 1;     /* the client waits for 100 Continue */

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

    /* replication (notes/replication.md) */
    int role;                         /* ROLE_NONE, ROLE_LOCAL (client write), ROLE_REPLICA */
    const char *site_key;             /* replica writes: the peer site's id (config-owned) */
    enum mutation_op mop;             /* what the write records */
    struct queue_write qw;            /* bucket, key, lease holder for the queue calls */
    char stamp[STAMP_TEXT_MAX];       /* stamp of this write (minted or received) */
    char vv[VV_TEXT_MAX];             /* its version vector */
    struct queue_entry cur;           /* index entry before this write */
    int64_t lease_deadline_ms;        /* stop waiting for a busy key (then 503) */
    struct event *retry_timer;        /* re-tries a busy lease (owned) */
    struct evbuffer *capture;         /* small request body kept for parsing (tagging XML) */
    struct xmlguard *xml;             /* DeleteObjects / Complete body bounds (pool), or NULL */
    char *tags;                       /* URL-encoded tag set to record, NULL when none */
    char *tags_override;              /* replica PUT: the newer tags to store instead (pool) */
    struct evbuffer *held;            /* store response body held until the commit (owned) */
    unsigned hold_response : 1;       /* answer only after the queue recorded the write */
    unsigned began : 1;               /* lease taken: must commit or release */
    unsigned qbusy;                   /* queue commands in flight (each keeps the req alive) */
    unsigned fence_pending : 1;       /* lease check before the last byte in flight */
    unsigned start_deferred : 1;      /* empty upload: store asked only once it verified */
    unsigned copy_rewrite : 1;        /* CopyObject with COPY directive, sent as REPLACE */
    unsigned multi_delete : 1;        /* DeleteObjects: each deleted key recorded after */
    unsigned is_complete : 1;         /* CompleteMultipartUpload */
    unsigned list_filter : 1;         /* ListBuckets for a bucket-limited key: answer filtered */
    unsigned tags_fixed : 1;          /* Complete: the store's tags were set to tags_override */
    unsigned held_truncated : 1;      /* the store's answer passed REQ_HELD_MAX */
    unsigned conflict : 1;            /* replica write beating a concurrent write of this site */
    unsigned tags_no_object : 1;      /* replica tag change, no object here: index only */

    /* ListBuckets for a key limited to some buckets: the names it may see (pool copies; the
     * credentials may be reloaded while the store answers) */
    char **list_allowed;
    size_t nlist_allowed;

    /* the loser of a conflict, kept before the replica write goes to the store (keep.h) */
    struct keep *keep;                /* in flight, NULL when none (owned) */
    struct event *renew_timer;        /* renews the lease while it runs (owned) */
    char *kept_at;                    /* where the loser is kept, "" nowhere (pool), NULL */

    /* auxiliary store request (copy source HEAD, ListParts) */
    struct upstream_xfer *aux;        /* live auxiliary transfer, NULL when none */
    void (*aux_done)(struct req *r, const char *errstr); /* its continuation */
    int aux_status;                   /* its response status */
    struct http_header *aux_hdrs;     /* its response headers (pool) */
    size_t naux, capaux;
    struct evbuffer *aux_body;        /* its response body (owned, bounded) */
    struct slice aux_out;             /* its request body, if any (pool) */
    size_t aux_out_pos;               /* bytes of aux_out sent */
    char *mpu_stamp;                  /* Complete: stamp minted at CreateMultipartUpload (pool) */
    struct evbuffer *parts;           /* Complete: part sizes "n1,n2,..." (owned) */
    int64_t parts_total;              /* Complete: sum of part sizes */
    char *part_marker;                /* ListParts paging (pool) */
    char *mpu_upload_id;              /* Create: the upload id the store answered (pool) */
    struct slice *del_keys;           /* DeleteObjects: keys the store deleted (pool) */
    size_t ndel, idel;

    /* bucket-level operation that runs at every site (bucket_fan_*) */
    struct peerop *peerop;            /* requests to the peer sites in flight (owned) */
    unsigned bucket_fan : 1;          /* CreateBucket, DeleteBucket, versioning, object lock */
    unsigned bucket_checked : 1;      /* DeleteBucket: every peer said the bucket is empty */

    /* log */
    int64_t t_start_us;               /* req_create() */
    int64_t upstream_us;              /* time to the store's response head */
    int64_t bytes_out;                /* response body bytes */
    const char *err_code;             /* S3 error code we sent, or NULL */
};

static const struct upstream_xfer_ops xfer_ops;

enum { ROLE_NONE = 0, ROLE_LOCAL, ROLE_REPLICA };

static void repl_after_store(struct req *r);
static int bucket_fan_op(const struct req *r);
static void bucket_fan_check_empty(struct req *r);
static void bucket_fan_after_store(struct req *r);
static struct slice aux_header(const struct req *r, const char *name);
static void on_copy_head(struct req *r, const char *errstr);
static void continue_start(struct req *r);
static void index_read(struct req *r);

/* ---- lifetime ------------------------------------------------------------------------------ */

/*
 * A queue command in flight keeps its req alive until its callback ran. More than one can
 * be in flight (a replica tag change that found no object commits while its lease check
 * may still be out), so this is a count: with a flag, the first callback to finish freed
 * the req under the other one (a crash in the chaos test).
 */
static void
qbusy_enter(struct req *r)
{
    r->qbusy++;
}

static void
qbusy_leave(struct req *r)
{
    assert(r->qbusy > 0);
    r->qbusy--;
}

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
    if (r->fe != NULL || r->xfer != NULL || r->aux != NULL || r->qbusy || r->peerop != NULL ||
        r->keep != NULL) {
        return;
    }
    if (r->began) {
        /* the write never reached a commit: give the key back (the intent goes with it) */
        r->began = 0;
        queue_release(r->w->q, &r->qw, NULL, NULL);
    }
    req_log(r);
    if (r->io_timer != NULL) {
        event_free(r->io_timer);
    }
    if (r->retry_timer != NULL) {
        event_free(r->retry_timer);
    }
    if (r->renew_timer != NULL) {
        event_free(r->renew_timer);
    }
    if (r->capture != NULL) {
        evbuffer_free(r->capture);
    }
    if (r->held != NULL) {
        evbuffer_free(r->held);
    }
    if (r->aux_body != NULL) {
        evbuffer_free(r->aux_body);
    }
    if (r->parts != NULL) {
        evbuffer_free(r->parts);
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
    if (r->aux != NULL) {
        upstream_abort(r->aux);
        r->aux = NULL;
    }
    if (r->keep != NULL) {
        keep_cancel(r->keep);
        r->keep = NULL;
    }
    if (r->io_timer != NULL) {
        evtimer_del(r->io_timer);
    }
    if (r->renew_timer != NULL) {
        evtimer_del(r->renew_timer);
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

/* 1 if NAME equals (any case) one of the N slices of TABLE. */
static int
in_table(struct slice name, const struct slice *table, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (slice_eq_nocase(name, table[i])) {
            return 1;
        }
    }
    return 0;
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
    /* replica-write headers and our hidden metadata are set by the proxy alone */
    return in_table(name, drop, sizeof(drop) / sizeof(drop[0])) ||
           slice_starts_with_nocase(name, SLICE_LIT("x-s3tee-")) ||
           slice_starts_with_nocase(name, SLICE_LIT("x-amz-meta-s3tee-"));
}

static int
drop_response_header(struct slice name)
{
    static const struct slice drop[] = {
        SLICE_LIT("connection"), SLICE_LIT("keep-alive"),    SLICE_LIT("transfer-encoding"),
        SLICE_LIT("proxy-connection"), SLICE_LIT("te"),       SLICE_LIT("trailer"),
        SLICE_LIT("upgrade"),    SLICE_LIT("content-length"),
    };
    /* stamps and vectors are s3tee's bookkeeping, never shown to clients */
    return in_table(name, drop, sizeof(drop) / sizeof(drop[0])) ||
           slice_starts_with_nocase(name, SLICE_LIT("x-amz-meta-s3tee-"));
}

static int
is_presign_param(struct slice name)
{
    static const struct slice names[] = {
        SLICE_LIT("X-Amz-Algorithm"),     SLICE_LIT("X-Amz-Credential"), SLICE_LIT("X-Amz-Date"),
        SLICE_LIT("X-Amz-Expires"),       SLICE_LIT("X-Amz-SignedHeaders"),
        SLICE_LIT("X-Amz-Signature"),     SLICE_LIT("X-Amz-Security-Token"),
    };
    return in_table(name, names, sizeof(names) / sizeof(names[0]));
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

static int parse_copy_source(struct req *r, struct slice src, struct slice *bucket,
                             struct slice *key, struct slice *version);

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
    if (ce == NULL && (ce = creds_find_site_key(r->cf->creds, ao->a.access_key)) != NULL) {
        r->site_key = ce->site; /* a peer site's replicator */
    }
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
    if (r->addr.op == S3_OP_LIST_BUCKETS && !ce->all_buckets) {
        /* the store answers for its whole account; this key sees only its own buckets */
        size_t i;

        r->list_filter = 1;
        r->list_allowed = pool_alloc(&r->pool, (ce->nbuckets + 1) * sizeof(char *));
        for (i = 0; i < ce->nbuckets; i++) {
            r->list_allowed[i] = pool_strndup(&r->pool, ce->buckets[i], strlen(ce->buckets[i]));
        }
        r->nlist_allowed = ce->nbuckets;
    }
    if (!ce->all_buckets && find_hdr(r, "x-amz-copy-source") != NULL) {
        /* a copy reads its source bucket: the key must be allowed that one too */
        struct slice sb, sk, sv;

        if (parse_copy_source(r, hdr_value(r, "x-amz-copy-source"), &sb, &sk, &sv) != 0) {
            fail(r, S3ERR_INVALID_ARGUMENT,
                 "Copy Source must mention the source bucket and key: sourcebucket/sourcekey");
            return -1;
        }
        if (!creds_bucket_allowed(ce, sb)) {
            fail(r, S3ERR_ACCESS_DENIED, NULL);
            return -1;
        }
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
        EVP_DigestInit_ex2(r->sha, sigv4_sha256_md(), NULL);
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
    if (!r->has_body && r->up_length == 0) {
        /* an empty upload has no last byte to hold back: the store commits it on sight, so
         * what it declares about its (empty) body is checked now */
        char got[CHECKSUM_BASE64_MAX];

        if (r->mode == BODY_HEX && strcmp(r->want_sha, EMPTY_SHA256) != 0) {
            fail(r, S3ERR_SHA256_MISMATCH, NULL);
            return -1;
        }
        if (r->hdr_sum.alg != CHECKSUM_NONE) {
            checksum_final_base64(&r->hdr_sum, got);
            if (strcmp(got, r->hdr_sum_value) != 0) {
                fail(r, S3ERR_BAD_DIGEST, NULL);
                return -1;
            }
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

/*
 * Signs a request for the store with the store's key. SH holds the N headers to send
 * (lowercase names) and has room for three more: host, x-amz-date and
 * x-amz-content-sha256 are added here. Returns "Name: value" lines, NULL-terminated, in
 * the pool; NULL when the request cannot be signed.
 */
static const char **
sign_for_store(struct req *r, struct slice method, const char *path, const char *query,
               struct sigv4_header *sh, size_t n, const char *payload)
{
    const struct creds_entry *store = creds_store(r->cf->creds);
    struct upsign_target t = {r->cf->upstream, store->access_key, store->secret,
                              r->cf->upstream_region};
    const char *errstr = NULL;
    const char **lines = upsign_lines(&r->pool, &r->w->keys, &t, method, path, query, sh, n,
                                      payload, &errstr);

    if (lines == NULL) {
        log_error("req", "%s cannot sign for the store bucket=%.*s key=%.*s: %s", r->id,
                  SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key), errstr);
    }
    return lines;
}

/* Metadata a COPY-directive copy takes from its source, so it can be sent as REPLACE. */
static int
copied_from_source(struct slice name)
{
    static const struct slice names[] = {
        SLICE_LIT("content-type"),     SLICE_LIT("cache-control"), SLICE_LIT("content-disposition"),
        SLICE_LIT("content-encoding"), SLICE_LIT("content-language"), SLICE_LIT("expires"),
        SLICE_LIT("x-amz-website-redirect-location"),
    };
    if (slice_starts_with_nocase(name, SLICE_LIT("x-amz-meta-"))) {
        return !slice_starts_with_nocase(name, SLICE_LIT("x-amz-meta-s3tee-"));
    }
    return in_table(name, names, sizeof(names) / sizeof(names[0]));
}

static int
start_upstream(struct req *r)
{
    struct sigv4_header *sh;
    struct upstream_xfer_args xa;
    const char **lines;
    char *path, *query;
    const char *payload;
    size_t n = 0, i;

    sh = pool_alloc(&r->pool, sizeof(*sh) * (r->nhdrs + r->naux + 8));
    /* a client's hex digest is passed on so the store checks it too; anything streamed
     * (aws-chunked, unsigned) goes as UNSIGNED-PAYLOAD, verified by us */
    if (r->mode == BODY_HEX) {
        payload = r->want_sha;
    } else if (r->up_length < 0) {
        payload = EMPTY_SHA256;
    } else {
        payload = "UNSIGNED-PAYLOAD";
    }
    for (i = 0; i < r->nhdrs; i++) {
        struct slice name = r->hdrs[i].name, value = r->hdrs[i].value;

        if (drop_request_header(name)) {
            continue;
        }
        if (r->tags_override != NULL && slice_eq_nocase(name, SLICE_LIT("x-amz-tagging"))) {
            continue;
        }
        if (r->copy_rewrite && (slice_eq_nocase(name, SLICE_LIT("x-amz-metadata-directive")) ||
                                copied_from_source(name))) {
            continue; /* replaced by the source's values below */
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
    if (r->copy_rewrite) {
        /* COPY would keep the source's stamp: send the source's metadata as REPLACE with
         * a fresh stamp, pinned to the source version we read */
        for (i = 0; i < r->naux; i++) {
            if (copied_from_source(r->aux_hdrs[i].name)) {
                sh[n++] = (struct sigv4_header){lower_dup(&r->pool, r->aux_hdrs[i].name),
                                                r->aux_hdrs[i].value};
            }
        }
        sh[n++] = (struct sigv4_header){SLICE_LIT("x-amz-metadata-directive"), SLICE_LIT("REPLACE")};
        sh[n++] = (struct sigv4_header){SLICE_LIT("x-amz-copy-source-if-match"),
                                        aux_header(r, "etag")};
    }
    if (r->tags_override != NULL && r->tags_override[0] != '\0') {
        sh[n++] = (struct sigv4_header){SLICE_LIT("x-amz-tagging"), slice_cstr(r->tags_override)};
    }
    if (r->role != ROLE_NONE && r->mop == MUT_PUT &&
        (r->addr.op == S3_OP_PUT_OBJECT || r->addr.op == S3_OP_COPY_OBJECT ||
         r->addr.op == S3_OP_CREATE_MULTIPART)) {
        sh[n++] = (struct sigv4_header){SLICE_LIT("x-amz-meta-s3tee-stamp"), slice_cstr(r->stamp)};
        sh[n++] = (struct sigv4_header){SLICE_LIT("x-amz-meta-s3tee-vv"), slice_cstr(r->vv)};
    }
    path = s3addr_upstream_path(&r->pool, &r->addr);
    query = upstream_query(r);
    lines = sign_for_store(r, r->method, path, query, sh, n, payload);
    if (lines == NULL) {
        fail(r, S3ERR_INTERNAL_ERROR, NULL);
        return -1;
    }
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

/* ---- auxiliary store requests (HEAD of a copy source, ListParts) ------------------------------ */

typedef void (*aux_done_fn)(struct req *r, const char *errstr);

/* Appends a copy of NAME: VALUE to a pool-backed header list that grows by doubling. */
static void
hdrs_add(struct pool *p, struct http_header **v, size_t *n, size_t *cap, struct slice name,
         struct slice value)
{
    if (*n == *cap) {
        struct http_header *nh;

        *cap = *cap ? *cap * 2 : 16;
        nh = pool_alloc(p, sizeof(*nh) * *cap);
        if (*n) {
            memcpy(nh, *v, sizeof(*nh) * *n);
        }
        *v = nh;
    }
    (*v)[*n].name = pool_slice_dup(p, name);
    (*v)[*n].value = pool_slice_dup(p, value);
    (*n)++;
}

/* First header named NAME (any case) in V, or SLICE_NULL. */
static struct slice
hdrs_find(const struct http_header *v, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (slice_eq_nocase(v[i].name, slice_cstr(name))) {
            return v[i].value;
        }
    }
    return SLICE_NULL;
}

static size_t
aux_read_body(void *arg, char *buf, size_t max)
{
    struct req *r = arg;
    size_t n = r->aux_out.len - r->aux_out_pos;

    if (n > max) {
        n = max;
    }
    memcpy(buf, r->aux_out.ptr + r->aux_out_pos, n);
    r->aux_out_pos += n;
    return n;
}

static void
aux_on_header(void *arg, struct slice name, struct slice value)
{
    struct req *r = arg;

    hdrs_add(&r->pool, &r->aux_hdrs, &r->naux, &r->capaux, name, value);
}

static void
aux_on_head(void *arg, int status)
{
    struct req *r = arg;

    r->aux_status = status;
}

static int
aux_on_body(void *arg, const char *data, size_t len)
{
    struct req *r = arg;

    /* listings of 1000 parts are ~150 KiB; anything past 8 MiB is not a listing */
    if (evbuffer_get_length(r->aux_body) + len <= 8 * 1024 * 1024) {
        evbuffer_add(r->aux_body, data, len);
    }
    return 0;
}

static void
aux_on_done(void *arg, const char *errstr)
{
    struct req *r = arg;
    aux_done_fn done = r->aux_done;

    r->aux = NULL;
    r->aux_done = NULL;
    if (r->fe == NULL) {
        req_maybe_free(r);
        return;
    }
    done(r, errstr);
}

static const struct upstream_xfer_ops aux_ops = {
    .read_body = aux_read_body,
    .on_header = aux_on_header,
    .on_head = aux_on_head,
    .on_body = aux_on_body,
    .on_done = aux_on_done,
};

/* Starts a body-less METHOD on PATH?QUERY at the store; DONE runs once with its result in
 * r->aux_status, r->aux_hdrs and r->aux_body. */
static int
aux_start(struct req *r, const char *method, const char *path, const char *query, aux_done_fn done)
{
    struct sigv4_header sh[3];
    struct upstream_xfer_args xa;
    const char **lines = sign_for_store(r, slice_cstr(method), path, query, sh, 0, EMPTY_SHA256);

    if (lines == NULL) {
        return -1;
    }
    r->naux = 0;
    r->aux_status = 0;
    r->aux_out = SLICE_NULL;
    r->aux_out_pos = 0;
    if (r->aux_body == NULL) {
        r->aux_body = evbuffer_new();
    }
    evbuffer_drain(r->aux_body, evbuffer_get_length(r->aux_body));
    xa.method = method;
    xa.path_query = query[0] ? pool_printf(&r->pool, "%s?%s", path, query) : path;
    xa.headers = lines;
    xa.body_length = -1;
    r->aux_done = done;
    r->aux = upstream_start(r->w->up, &xa, &aux_ops, r);
    return r->aux ? 0 : -1;
}

/* The same with a small in-memory BODY (pool or longer-lived), sent with its Content-MD5
 * and signed with its SHA-256. */
static int
aux_start_body(struct req *r, const char *method, const char *path, const char *query,
               struct slice body, aux_done_fn done)
{
    struct sigv4_header sh[5];
    struct upstream_xfer_args xa;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char *sha = pool_alloc(&r->pool, 65), *md5 = pool_alloc(&r->pool, 32);
    const char **lines;

    if (!EVP_Digest(body.ptr, body.len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        return -1;
    }
    hex_lower(md, 32, sha);
    if (!EVP_Digest(body.ptr, body.len, md, &mdlen, EVP_md5(), NULL) || mdlen != 16) {
        return -1;
    }
    EVP_EncodeBlock((unsigned char *)md5, md, 16);
    sh[0] = (struct sigv4_header){SLICE_LIT("content-md5"), slice_cstr(md5)};
    sh[1] = (struct sigv4_header){SLICE_LIT("content-type"), SLICE_LIT("application/xml")};
    lines = sign_for_store(r, slice_cstr(method), path, query, sh, 2, sha);
    if (lines == NULL) {
        return -1;
    }
    r->naux = 0;
    r->aux_status = 0;
    r->aux_out = body;
    r->aux_out_pos = 0;
    if (r->aux_body == NULL) {
        r->aux_body = evbuffer_new();
    }
    evbuffer_drain(r->aux_body, evbuffer_get_length(r->aux_body));
    xa.method = method;
    xa.path_query = pool_printf(&r->pool, "%s?%s", path, query);
    xa.headers = lines;
    xa.body_length = (int64_t)body.len;
    r->aux_done = done;
    r->aux = upstream_start(r->w->up, &xa, &aux_ops, r);
    return r->aux ? 0 : -1;
}

static struct slice
aux_header(const struct req *r, const char *name)
{
    return hdrs_find(r->aux_hdrs, r->naux, name);
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
    if ((!r->body_ended && evbuffer_get_length(r->upbuf) == 0) || r->resp_paused ||
        upstream_sink_blocked(r->xfer)) {
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

/* ---- replication ------------------------------------------------------------------------------ */

static void
add_resp_header(struct req *r, struct slice name, struct slice value)
{
    hdrs_add(&r->pool, &r->resp_hdrs, &r->nresp, &r->capresp, name, value);
}

/* A short answer the proxy makes itself (replica verdicts); empty body. */
static void
respond_empty(struct req *r, int status, const char *result)
{
    struct http_header h[2] = {
        {SLICE_LIT("x-amz-request-id"), slice_cstr(r->id)},
        {SLICE_LIT("x-s3tee-result"), slice_cstr(result)},
    };

    if (r->fe == NULL) {
        return;
    }
    r->status = status;
    r->head_sent = 1;
    r->ops->send_head(r->fe, status, h, 2, 0);
    release_fe(r, 1);
}

static int
local_recorded(enum s3_op op)
{
    return op == S3_OP_PUT_OBJECT || op == S3_OP_COPY_OBJECT || op == S3_OP_DELETE_OBJECT ||
           op == S3_OP_PUT_OBJECT_TAGGING || op == S3_OP_DELETE_OBJECT_TAGGING ||
           op == S3_OP_CREATE_MULTIPART || op == S3_OP_COMPLETE_MULTIPART ||
           op == S3_OP_DELETE_OBJECTS;
}

/* "bucket/key" or "/bucket/key" (URL-encoded, maybe "?versionId=") -> decoded parts. */
static int
parse_copy_source(struct req *r, struct slice src, struct slice *bucket, struct slice *key,
                  struct slice *version)
{
    struct slice dec;
    long q = slice_index(src, '?'), slash;

    *version = SLICE_NULL;
    if (q >= 0) {
        struct slice qs = slice_make(src.ptr + q + 1, src.len - (size_t)q - 1);

        if (slice_starts_with(qs, SLICE_LIT("versionId="))) {
            *version = slice_make(qs.ptr + 10, qs.len - 10);
        }
        src.len = (size_t)q;
    }
    /* decoded first, then one leading '/' dropped: what RGW does (RGWCopyObj::
     * parse_copy_location), so "%2Fb%2Fk" names the bucket the store will read */
    if (uri_decode_pool(&r->pool, src, 0, &dec) != 0) {
        return -1;
    }
    if (dec.len && dec.ptr[0] == '/') {
        dec.ptr++;
        dec.len--;
    }
    if ((slash = slice_index(dec, '/')) <= 0) {
        return -1;
    }
    *bucket = slice_make(dec.ptr, (size_t)slash);
    *key = slice_make(dec.ptr + slash + 1, dec.len - (size_t)slash - 1);
    return 0;
}

static enum mutation_op
op_to_mutation(enum s3_op op)
{
    switch (op) {
    case S3_OP_DELETE_OBJECT:
        return MUT_DELETE;
    case S3_OP_PUT_OBJECT_TAGGING:
    case S3_OP_DELETE_OBJECT_TAGGING:
        return MUT_TAGS;
    default:
        return MUT_PUT;
    }
}

/*
 * A peer's replicator publishes its site's low-water figure (replicator/gc.h) on the
 * requests it sends here: kept in s3tee:lw for this site's tombstone horizon. Best effort:
 * an older figure only keeps tombstones longer.
 */
static void
record_low_water(struct req *r)
{
    struct slice v = hdr_value(r, "x-s3tee-low-water");
    const char *argv[4] = {"HSET", QUEUE_KEY_LW, r->site_key, NULL};
    size_t argvlen[4], i;

    if (v.ptr == NULL || r->w->q == NULL || v.len == 0 || v.len > 15) {
        return;
    }
    for (i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9') {
            log_warn("repl", "%s site %s sent a malformed x-s3tee-low-water; ignored", r->id,
                     r->site_key);
            return;
        }
    }
    argv[3] = pool_printf(&r->pool, "%.*s %lld", SLICE_ARGS(v), (long long)timeutil_now_ms());
    for (i = 0; i < 4; i++) {
        argvlen[i] = strlen(argv[i]);
    }
    (void)queue_command_argv(r->w->q, 4, argv, argvlen, NULL, NULL);
}

/*
 * Decides whether this request is a recorded client write (ROLE_LOCAL), a peer's replica
 * write (ROLE_REPLICA) or neither. Returns -1 after answering an error.
 */
static int
repl_decide(struct req *r)
{
    size_t i;

    for (i = 0; i < r->nhdrs && r->site_key == NULL; i++) {
        if (slice_starts_with_nocase(r->hdrs[i].name, SLICE_LIT("x-s3tee-")) ||
            slice_starts_with_nocase(r->hdrs[i].name, SLICE_LIT("x-amz-meta-s3tee-"))) {
            fail(r, S3ERR_INVALID_ARGUMENT,
                 "Headers x-s3tee-* and metadata x-amz-meta-s3tee-* are reserved for s3tee.");
            return -1;
        }
    }
    if (r->site_key != NULL) {
        struct slice st = hdr_value(r, "x-s3tee-stamp"), vv = hdr_value(r, "x-s3tee-vv");
        struct stamp parsed;
        struct vv pv;

        record_low_water(r);
        if (st.ptr == NULL) {
            if (s3_op_is_mutation(r->addr.op)) {
                fail(r, S3ERR_INVALID_REQUEST, "A site key writes only replica writes, which "
                                               "carry x-s3tee-stamp.");
                return -1;
            }
            return 0; /* a peer reading, e.g. for resync */
        }
        if (stamp_parse(st, &parsed) != 0 || vv_parse(vv, &pv) != 0 || st.len >= STAMP_TEXT_MAX ||
            vv.len >= VV_TEXT_MAX) {
            fail(r, S3ERR_INVALID_ARGUMENT, "x-s3tee-stamp or x-s3tee-vv is malformed.");
            return -1;
        }
        memcpy(r->stamp, st.ptr, st.len);
        r->stamp[st.len] = '\0';
        memcpy(r->vv, vv.ptr, vv.len);
        r->vv[vv.len] = '\0';
        r->role = ROLE_REPLICA;
        /* a peer's repair (replicator/repair.h) rewrites the index's own stamp into a store
         * that lost it; only a site key gets this far */
        r->qw.repair = slice_eq(hdr_value(r, "x-s3tee-repair"), SLICE_LIT("1"));
    } else if (local_recorded(r->addr.op) && s3addr_param(&r->addr, "versionId") == NULL &&
               proxy_conf_repl_mode(r->cf, r->addr.bucket.ptr, r->addr.bucket.len) == REPL_ASYNC) {
        r->role = ROLE_LOCAL;
    } else {
        if (r->site_key == NULL && bucket_fan_op(r) &&
            proxy_conf_repl_mode(r->cf, r->addr.bucket.ptr, r->addr.bucket.len) != REPL_OFF &&
            r->cf->site_id != NULL) {
            r->bucket_fan = 1;
            if (r->has_body && r->addr.op == S3_OP_PUT_BUCKET_CONFIG) {
                r->capture = evbuffer_new(); /* sent on to the peers */
            }
        }
        if (r->addr.op == S3_OP_PUT_BUCKET_CONFIG && r->addr.subresource != NULL &&
            strcmp(r->addr.subresource, "lifecycle") == 0 &&
            proxy_conf_repl_mode(r->cf, r->addr.bucket.ptr, r->addr.bucket.len) != REPL_OFF) {
            fail(r, S3ERR_INVALID_REQUEST,
                 pool_printf(&r->pool,
                             "Lifecycle rules are refused on replicated bucket '%.*s': each "
                             "site's store would expire objects on its own schedule. Turn "
                             "replication off for the bucket (bucket_replication) to use them.",
                             SLICE_ARGS(r->addr.bucket)));
            return -1;
        }
        return 0;
    }
    if (r->addr.op == S3_OP_COPY_OBJECT && r->role == ROLE_LOCAL) {
        struct slice dir = hdr_value(r, "x-amz-metadata-directive"), sb, sk, sv;

        if (dir.ptr == NULL || slice_eq_nocase(dir, SLICE_LIT("COPY"))) {
            if (parse_copy_source(r, hdr_value(r, "x-amz-copy-source"), &sb, &sk, &sv) == 0 &&
                slice_eq(sb, r->addr.bucket) && slice_eq(sk, r->addr.key) && sv.ptr == NULL &&
                hdr_value(r, "x-amz-storage-class").ptr == NULL &&
                hdr_value(r, "x-amz-server-side-encryption").ptr == NULL &&
                hdr_value(r, "x-amz-website-redirect-location").ptr == NULL) {
                fail(r, S3ERR_INVALID_REQUEST,
                     "This copy request is illegal because it is trying to copy an object to "
                     "itself without changing the object's metadata, storage class, website "
                     "redirect location or encryption attributes.");
                return -1;
            }
            r->copy_rewrite = 1;
        }
    }
    r->multi_delete = r->addr.op == S3_OP_DELETE_OBJECTS;
    r->is_complete = r->addr.op == S3_OP_COMPLETE_MULTIPART;
    r->mop = op_to_mutation(r->addr.op);
    r->qw.bucket = r->addr.bucket;
    r->qw.key = r->addr.key;
    r->qw.holder = r->id;
    r->qw.lease_ms = r->cf->lease_ms;
    r->qw.op = r->mop;
    r->qw.intent_ttl_ms = r->cf->lease_ms + r->cf->upstream_io_timeout_ms +
                          r->cf->upstream_first_byte_timeout_ms;
    r->lease_deadline_ms = timeutil_now_ms() + r->cf->lease_wait_ms;
    if (r->mop == MUT_PUT && r->addr.op != S3_OP_COPY_OBJECT) {
        struct slice tg = hdr_value(r, "x-amz-tagging");

        r->tags = tg.ptr ? pool_strndup(&r->pool, tg.ptr, tg.len) : pool_strndup(&r->pool, "", 0);
    } else if (r->addr.op == S3_OP_DELETE_OBJECT_TAGGING) {
        r->tags = pool_strndup(&r->pool, "", 0);
    } else if (r->addr.op == S3_OP_PUT_OBJECT_TAGGING) {
        r->capture = evbuffer_new(); /* the Tagging XML is parsed at commit */
    }
    return 0;
}

/*
 * A replica write that won (its stamp is higher) over a write of this site it did not
 * know about (version vectors incomparable): a conflict, and this site, the loser's
 * origin, is the one that logs it and keeps the loser (notes/replication.md).
 */
static int
repl_is_conflict(const struct req *r)
{
    struct vv in, cur;
    struct stamp cs;

    return r->role == ROLE_REPLICA && r->mop != MUT_TAGS && r->cur.exists &&
           r->cur.stamp[0] != '\0' && vv_parse(slice_cstr(r->vv), &in) == 0 &&
           vv_parse(slice_cstr(r->cur.vv), &cur) == 0 && vv_compare(&in, &cur) == VV_CONCURRENT &&
           stamp_parse(slice_cstr(r->cur.stamp), &cs) == 0 && strcmp(cs.site, r->cf->site_id) == 0;
}

/* The lease is held while the loser is copied: the copy may take long for a big object. */
static void
on_keep_renew(evutil_socket_t fd, short what, void *arg)
{
    struct req *r = arg;
    int64_t every = r->cf->lease_ms / 3;
    struct timeval tv = {every / 1000, (every % 1000) * 1000};

    (void)fd;
    (void)what;
    r->qw.now_ms = timeutil_now_ms();
    queue_renew_lease(r->w->q, &r->qw, NULL, NULL);
    evtimer_add(r->renew_timer, &tv);
}

static void
on_kept(void *arg, const struct keep_result *res)
{
    struct req *r = arg;

    r->keep = NULL;
    evtimer_del(r->renew_timer);
    if (r->fe == NULL) {
        req_maybe_free(r);
        return;
    }
    if (res->outcome == KEEP_FAILED) {
        /* the peer's replicator retries a 503 until it goes through: the entry waits there */
        fail(r, S3ERR_SERVICE_UNAVAILABLE,
             pool_printf(&r->pool, "This write wins a conflict over a write of this site, "
                                   "which could not be kept (%s). Retry later.",
                         res->why));
        req_maybe_free(r);
        return;
    }
    r->kept_at = pool_strndup(&r->pool, res->kept_at, strlen(res->kept_at));
    continue_start(r);
}

/* Keeps the loser's bytes (keep.h), then forwards the replica write; 503 if it cannot. */
static void
repl_keep_loser(struct req *r)
{
    struct keep_args a = {r->addr.bucket, r->addr.key, r->cur.stamp, r->cur.etag,
                          r->stamp,       r->site_key, r->id};
    int64_t every = r->cf->lease_ms / 3;
    struct timeval tv = {every / 1000, (every % 1000) * 1000};

    r->keep = keep_start(r->w->evb, r->w->up, &r->w->keys, r->cf, &a, on_kept, r);
    if (r->keep == NULL) {
        fail(r, S3ERR_SERVICE_UNAVAILABLE, "This write wins a conflict over a write of this "
                                           "site, which could not be kept. Retry later.");
        req_maybe_free(r);
        return;
    }
    if (r->renew_timer == NULL) {
        r->renew_timer = evtimer_new(r->w->evb, on_keep_renew, r);
    }
    evtimer_add(r->renew_timer, &tv);
}

static void repl_begin(struct req *r);

static void
on_retry_begin(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    repl_begin(arg);
}

static void
on_begin(void *arg, const char *errstr, const struct queue_begin_result *res)
{
    struct req *r = arg;
    struct timeval tv = {0, 20000};

    qbusy_leave(r);
    if (errstr == NULL && res->verdict == QUEUE_GO) {
        r->began = 1; /* from here on the lease is ours to release or commit */
        r->cur = res->cur;
        if (r->role == ROLE_LOCAL) {
            snprintf(r->stamp, sizeof(r->stamp), "%s", res->stamp);
            snprintf(r->vv, sizeof(r->vv), "%s", res->vv);
        }
        if (r->role == ROLE_REPLICA && r->mop == MUT_PUT && r->cur.tag_stamp[0] != '\0') {
            struct stamp in, tst;

            if (stamp_parse(slice_cstr(r->stamp), &in) == 0 &&
                stamp_parse(slice_cstr(r->cur.tag_stamp), &tst) == 0 && stamp_cmp(&tst, &in) > 0) {
                /* a newer tag change already landed here: the older PUT's bytes apply, its
                 * tags do not (tags are a register of their own) */
                r->tags_override = pool_strndup(&r->pool, res->cur.tags.ptr, res->cur.tags.len);
            }
        }
        if (r->is_complete && r->role == ROLE_LOCAL && r->mpu_stamp != NULL) {
            /* a multipart upload is ordered by the stamp it took at Create (DESIGN.md) */
            struct stamp mine, cur;

            if (r->cur.stamp[0] != '\0' && stamp_parse(slice_cstr(r->cur.stamp), &cur) == 0 &&
                stamp_parse(slice_cstr(r->mpu_stamp), &mine) == 0 && stamp_cmp(&cur, &mine) > 0) {
                log_warn("repl", "%s multipart upload of bucket=%.*s key=%.*s (stamp %s) lost to "
                                 "the newer write %s; completion refused",
                         r->id, SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key), r->mpu_stamp,
                         r->cur.stamp);
                if (r->fe != NULL) {
                    fail(r, S3ERR_OPERATION_ABORTED,
                         "A newer write to this key superseded the multipart upload, which was "
                         "started before it. Upload again to replace it.");
                }
                req_maybe_free(r);
                return;
            }
            snprintf(r->stamp, sizeof(r->stamp), "%s", r->mpu_stamp);
            if (r->cur.tag_stamp[0] != '\0') {
                struct stamp tst;

                if (stamp_parse(slice_cstr(r->cur.tag_stamp), &tst) == 0 &&
                    stamp_cmp(&tst, &mine) > 0) {
                    /* a tag change made since the Create is newer than its tags */
                    r->tags_override = pool_strndup(&r->pool, res->cur.tags.ptr, res->cur.tags.len);
                }
            }
        }
    }
    if (r->fe == NULL) {
        req_maybe_free(r); /* the client left while we waited */
        return;
    }
    if (errstr != NULL) {
        log_warn("repl", "%s site queue unavailable for bucket=%.*s key=%.*s: %s", r->id,
                 SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key), errstr);
        fail(r, S3ERR_SLOW_DOWN, "The site's replication queue is unavailable; the write was not "
                                 "accepted. Please retry.");
        req_maybe_free(r);
        return;
    }
    switch (res->verdict) {
    case QUEUE_GO:
        if (repl_is_conflict(r)) {
            r->conflict = 1;
            if (!r->cur.deleted) {
                repl_keep_loser(r); /* continue_start() once the loser is kept */
                return;
            }
        }
        continue_start(r);
        return;
    case QUEUE_BUSY:
        if (timeutil_now_ms() < r->lease_deadline_ms) {
            if (r->retry_timer == NULL) {
                r->retry_timer = evtimer_new(r->w->evb, on_retry_begin, r);
            }
            evtimer_add(r->retry_timer, &tv);
            return;
        }
        fail(r, S3ERR_SLOW_DOWN, "Another write to this key is still in progress. Please retry.");
        break;
    case QUEUE_STALE:
        log_debug("repl", "%s replica from site %s for bucket=%.*s key=%.*s is stale (%s)", r->id,
                  r->site_key, SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key), r->stamp);
        respond_empty(r, 200, "stale");
        break;
    case QUEUE_FUTURE:
        log_warn("repl", "ALARM clock: site %s sent stamp %s for bucket=%.*s key=%.*s, more than "
                         "%lldms ahead of this site's clock; refused until its clock is fixed",
                 r->site_key, r->stamp, SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key),
                 (long long)r->cf->max_clock_offset_ms);
        respond_empty(r, 503, "future");
        break;
    }
    req_maybe_free(r);
}

static void
repl_begin(struct req *r)
{
    int rc;

    r->qw.now_ms = timeutil_now_ms();
    qbusy_enter(r);
    if (r->role == ROLE_LOCAL) {
        rc = queue_begin_local(r->w->q, &r->qw, on_begin, r);
    } else {
        rc = queue_begin_replica(r->w->q, &r->qw, slice_cstr(r->stamp), r->cf->max_clock_offset_ms,
                                 on_begin, r);
    }
    if (rc != 0) {
        qbusy_leave(r);
        fail(r, S3ERR_SLOW_DOWN, "The site's replication queue is unavailable. Please retry.");
        req_maybe_free(r);
    }
}

static void
on_fence(void *arg, const char *errstr, int held)
{
    struct req *r = arg;

    qbusy_leave(r);
    r->fence_pending = 0;
    if (r->fe == NULL) {
        req_maybe_free(r);
        return;
    }
    if (errstr != NULL || !held) {
        log_warn("repl", "%s lease on bucket=%.*s key=%.*s %s before the last byte; store write "
                         "aborted",
                 r->id, SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key),
                 errstr ? "could not be checked" : "was lost");
        fail(r, S3ERR_SLOW_DOWN, "The write lost its lease on the key. Please retry.");
        req_maybe_free(r);
        return;
    }
    r->body_verified = 1;
    if (r->start_deferred) {
        r->start_deferred = 0;
        continue_start(r);
        return;
    }
    if (r->xfer != NULL) {
        touch(r);
        upstream_resume_body(r->xfer);
    }
}

/* The fence: the last byte goes to the store only while the lease is still ours. */
static void
repl_fence(struct req *r)
{
    int64_t margin = r->cf->lease_ms / 3 < 2000 ? r->cf->lease_ms / 3 : 2000;

    qbusy_enter(r);
    r->fence_pending = 1;
    r->qw.now_ms = timeutil_now_ms();
    if (queue_check_lease(r->w->q, &r->qw, margin, on_fence, r) != 0) {
        on_fence(r, queue_err_unavailable, 0);
    }
}

static int
xml_text(struct slice in, const char *open, const char *close, size_t *pos, struct slice *out)
{
    const char *a = memmem(in.ptr + *pos, in.len - *pos, open, strlen(open)), *b;

    if (a == NULL) {
        return -1;
    }
    a += strlen(open);
    b = memmem(a, (size_t)(in.ptr + in.len - a), close, strlen(close));
    if (b == NULL) {
        return -1;
    }
    *out = slice_make(a, (size_t)(b - a));
    *pos = (size_t)(b - in.ptr) + strlen(close);
    return 0;
}

/* The S3 <Code> of the store's error answer held back in r->held (empty if none). */
static struct slice
held_error_code(struct req *r)
{
    size_t n = r->held ? evbuffer_get_length(r->held) : 0, pos = 0;
    const char *xml = n ? (const char *)evbuffer_pullup(r->held, (ev_ssize_t)n) : "";
    struct slice code = SLICE_NULL;

    if (r->status < 300 || xml_text(slice_make(xml, n), "<Code>", "</Code>", &pos, &code) != 0) {
        return SLICE_LIT("");
    }
    return code;
}

static struct slice
xml_unescape(struct pool *p, struct slice s)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    char *o = pool_alloc(p, s.len + 1);
    size_t i = 0, n = 0, k;

    while (i < s.len) {
        int done = 0;
        size_t cl;

        /* clients (Go's encoding/xml) and stores write tabs, CRs and LFs as "&#xA;" */
        if (s.ptr[i] == '&' && (k = slice_xml_charref(slice_make(s.ptr + i, s.len - i), o + n,
                                                      &cl)) != 0) {
            n += cl;
            i += k;
            continue;
        }
        for (k = 0; s.ptr[i] == '&' && k < sizeof(ents) / sizeof(ents[0]); k++) {
            size_t el = strlen(ents[k].ent);

            if (s.len - i >= el && memcmp(s.ptr + i, ents[k].ent, el) == 0) {
                o[n++] = ents[k].c;
                i += el;
                done = 1;
                break;
            }
        }
        if (!done) {
            o[n++] = s.ptr[i++];
        }
    }
    o[n] = '\0';
    return slice_make(o, n);
}

/* Tagging XML (<Tag><Key>k</Key><Value>v</Value></Tag>...) -> "k=v&..." URL-encoded. */
static char *
tags_from_xml(struct pool *p, struct slice xml)
{
    struct evbuffer *b = evbuffer_new();
    size_t pos = 0, len;
    struct slice tag, k, v;
    char *out;

    while (xml_text(xml, "<Tag>", "</Tag>", &pos, &tag) == 0) {
        size_t tp = 0, tp2 = 0;

        if (xml_text(tag, "<Key>", "</Key>", &tp, &k) != 0) {
            continue;
        }
        if (xml_text(tag, "<Value>", "</Value>", &tp2, &v) != 0) {
            v = SLICE_LIT("");
        }
        evbuffer_add_printf(b, "%s%s=%s", evbuffer_get_length(b) ? "&" : "",
                            uri_encode_pool(p, xml_unescape(p, k), 0),
                            uri_encode_pool(p, xml_unescape(p, v), 0));
    }
    len = evbuffer_get_length(b);
    out = pool_alloc(p, len + 1);
    evbuffer_remove(b, out, len);
    out[len] = '\0';
    evbuffer_free(b);
    return out;
}

static struct slice
resp_header(const struct req *r, const char *name)
{
    return hdrs_find(r->resp_hdrs, r->nresp, name);
}

/* Sends the store's answer that was held back during the commit. */
static void
send_held(struct req *r)
{
    if (r->fe == NULL) {
        return;
    }
    if (r->tags_no_object) {
        /* the store's NoSuchKey is not the answer: the register was recorded */
        respond_empty(r, 200, "applied");
        return;
    }
    if (r->role == ROLE_REPLICA) {
        add_resp_header(r, SLICE_LIT("x-s3tee-result"), SLICE_LIT("applied"));
    }
    if (r->role != ROLE_NONE && r->stamp[0] != '\0') {
        add_resp_header(r, SLICE_LIT("x-s3tee-stamp"), slice_cstr(r->stamp));
    }
    r->head_sent = 1;
    r->ops->send_head(r->fe, r->status, r->resp_hdrs, r->nresp, r->resp_length);
    if (r->held != NULL && evbuffer_get_length(r->held) > 0) {
        r->bytes_out += (int64_t)evbuffer_get_length(r->held);
        r->ops->send_body(r->fe, r->held);
    }
    release_fe(r, 1);
}

/* Replica write that beat a concurrent local one: the loser's origin (us) logs it once,
 * with where the loser was kept (decided before the store was asked: repl_keep_loser). */
static void
repl_log_conflict(struct req *r)
{
    struct queue_conflict c;
    const char *kept = r->kept_at != NULL ? r->kept_at : "";

    if (!r->conflict) {
        return;
    }
    memset(&c, 0, sizeof(c));
    c.bucket = r->addr.bucket;
    c.key = r->addr.key;
    c.winner_stamp = slice_cstr(r->stamp);
    c.loser_stamp = slice_cstr(r->cur.stamp);
    c.winner_etag = hdr_value(r, "x-s3tee-origin-etag");
    c.loser_etag = slice_cstr(r->cur.deleted ? "" : r->cur.etag);
    c.loser_size = r->cur.deleted ? 0 : r->cur.size;
    c.kept_at = slice_cstr(kept);
    log_warn("repl", "conflict bucket=%.*s key=%.*s: write %s from site %s wins over concurrent "
                     "local %s %s (etag %s); recorded in the conflict log, loser kept at %s",
             SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key), r->stamp, r->site_key,
             r->cur.deleted ? "delete" : "write", r->cur.stamp, r->cur.etag,
             kept[0] ? kept : (r->cur.deleted ? "- (a delete has no bytes)" : "- (nowhere)"));
    queue_log_conflict(r->w->q, &c, NULL, NULL);
}

static void
on_commit(void *arg, const char *errstr)
{
    struct req *r = arg;

    qbusy_leave(r);
    r->began = 0; /* the commit script released the lease (or it lapsed) */
    if (errstr != NULL) {
        log_error("repl", "%s write to bucket=%.*s key=%.*s is in the store but could not be "
                          "queued (%s); its intent stays for a replicator to settle",
                  r->id, SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key), errstr);
        fail(r, S3ERR_SLOW_DOWN, "The write was stored at this site but could not be queued for "
                                 "replication. Please retry.");
        req_maybe_free(r);
        return;
    }
    repl_log_conflict(r);
    send_held(r);
    req_maybe_free(r);
}

/* ---- multipart: the stamp taken at Create, the part sizes at Complete ------------------------- */

#define MPU_KEY_TTL_MS "604800000" /* S3 keeps incomplete uploads for days; a week covers it */

/* The upload whose stamp could not be kept is aborted: the client gets 503 and retries. */
static void
on_mpu_abandoned(struct req *r, const char *errstr)
{
    if (errstr != NULL || r->aux_status / 100 != 2) {
        log_warn("repl", "%s aborting multipart upload %s of bucket=%.*s key=%.*s failed (%s, "
                         "HTTP %d); it stays at the store until aborted or expired",
                 r->id, r->mpu_upload_id, SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key),
                 errstr ? errstr : "refused", r->aux_status);
    }
    fail(r, S3ERR_SLOW_DOWN, "The site's replication queue is unavailable; the multipart upload "
                             "was not started. Please retry.");
    req_maybe_free(r);
}

static void
on_mpu_saved(void *arg, const char *errstr, struct redisReply *reply)
{
    struct req *r = arg;

    (void)reply;
    qbusy_leave(r);
    if (errstr != NULL && r->mpu_upload_id != NULL) {
        /* The store wrote the Create's stamp into the upload's metadata; without the stamp
         * key, Complete would log another one than the object carries, and no peer could
         * ever take it. So the upload does not start. */
        char *path = s3addr_upstream_path(&r->pool, &r->addr);
        char *query = pool_printf(&r->pool, "uploadId=%s",
                                  uri_encode_pool(&r->pool, slice_cstr(r->mpu_upload_id), 0));

        log_warn("repl", "%s could not remember the stamp of multipart upload %s of "
                         "bucket=%.*s key=%.*s (%s); aborting it and answering 503",
                 r->id, r->mpu_upload_id, SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key),
                 errstr);
        r->began = 0;
        queue_release(r->w->q, &r->qw, NULL, NULL);
        if (aux_start(r, "DELETE", path, query, on_mpu_abandoned) != 0) {
            on_mpu_abandoned(r, "the abort could not be sent");
        }
        return;
    }
    r->began = 0;
    queue_release(r->w->q, &r->qw, NULL, NULL);
    send_held(r);
    req_maybe_free(r);
}

/*
 * The stamp and the open-upload set in one step: while the upload is open its Complete may
 * still log this (old) stamp, so the tombstone horizon (replicator/gc.h) must stay below it.
 * KEYS: s3tee:mpu:<id>, s3tee:mpus  ARGV: stamp, ttl ms, upload id
 */
static const char mpu_save_script[] =
    "local ms = tonumber(string.sub(ARGV[1], 1, 12), 16)\n"
    "if ms then redis.call('ZADD', KEYS[2], ms, ARGV[3]) end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return 1\n";

/* CreateMultipartUpload succeeded: keep its stamp under the upload id for Complete. */
static void
mpu_save_stamp(struct req *r)
{
    size_t n = r->held ? evbuffer_get_length(r->held) : 0, pos = 0;
    const char *xml = n ? (const char *)evbuffer_pullup(r->held, (ev_ssize_t)n) : "";
    struct slice id;
    const char *argv[8];
    size_t argvlen[8];

    if (xml_text(slice_make(xml, n), "<UploadId>", "</UploadId>", &pos, &id) != 0) {
        on_mpu_saved(r, NULL, NULL);
        return;
    }
    argv[0] = "EVAL";
    argv[1] = mpu_save_script;
    argv[2] = "2";
    argv[3] = pool_printf(&r->pool, "s3tee:mpu:%.*s", SLICE_ARGS(id));
    argv[4] = QUEUE_KEY_MPUS;
    argv[5] = r->stamp;
    argv[6] = MPU_KEY_TTL_MS;
    argv[7] = pool_strndup(&r->pool, id.ptr, id.len);
    r->mpu_upload_id = (char *)argv[7];
    for (pos = 0; pos < 8; pos++) {
        argvlen[pos] = strlen(argv[pos]);
    }
    qbusy_enter(r);
    if (queue_command_argv(r->w->q, 8, argv, argvlen, on_mpu_saved, r) != 0) {
        on_mpu_saved(r, queue_err_unavailable, NULL);
    }
}

/*
 * The upload is gone from the store (completed or aborted): it no longer holds the
 * tombstone horizon back. Best effort: an entry left behind only holds the horizon for the
 * week the replicator's gc keeps it.
 */
static void
mpu_forget(struct req *r)
{
    const struct s3_param *id = s3addr_param(&r->addr, "uploadId");
    const char *argv[3] = {"ZREM", QUEUE_KEY_MPUS, NULL};
    size_t argvlen[3] = {4, sizeof(QUEUE_KEY_MPUS) - 1, 0};

    if (id == NULL || r->w->q == NULL) {
        return;
    }
    argv[2] = pool_strndup(&r->pool, id->value.ptr, id->value.len);
    argvlen[2] = id->value.len;
    (void)queue_command_argv(r->w->q, 3, argv, argvlen, NULL, NULL);
}

static void on_parts(struct req *r, const char *errstr);

static void
list_parts_page(struct req *r)
{
    const struct s3_param *id = s3addr_param(&r->addr, "uploadId");
    char *path = s3addr_upstream_path(&r->pool, &r->addr);
    char *query = pool_printf(&r->pool, "max-parts=1000&part-number-marker=%s&uploadId=%s",
                              r->part_marker ? r->part_marker : "0",
                              uri_encode_pool(&r->pool, id ? id->value : SLICE_LIT(""), 0));

    if (aux_start(r, "GET", path, query, on_parts) != 0) {
        fail(r, S3ERR_INTERNAL_ERROR, NULL);
        req_maybe_free(r);
    }
}

/* ListParts page: sizes in part order; the peer rebuilds the object with the same parts. */
static void
on_parts(struct req *r, const char *errstr)
{
    size_t n = evbuffer_get_length(r->aux_body), pos = 0;
    const char *xml = n ? (const char *)evbuffer_pullup(r->aux_body, (ev_ssize_t)n) : "";
    struct slice body = slice_make(xml, n), part, v;
    uint64_t size;

    if (errstr != NULL || r->aux_status != 200) {
        /* the store will refuse the Complete the same way; let it answer */
        repl_begin(r);
        return;
    }
    if (r->parts == NULL) {
        r->parts = evbuffer_new();
    }
    while (xml_text(body, "<Part>", "</Part>", &pos, &part) == 0) {
        size_t pp = 0;

        if (xml_text(part, "<Size>", "</Size>", &pp, &v) == 0 && slice_to_u64(v, &size) == 0) {
            evbuffer_add_printf(r->parts, "%s%llu", evbuffer_get_length(r->parts) ? "," : "",
                                (unsigned long long)size);
            r->parts_total += (int64_t)size;
        }
    }
    pos = 0;
    if (memmem(xml, n, "<IsTruncated>true</IsTruncated>", 31) != NULL &&
        xml_text(body, "<NextPartNumberMarker>", "</NextPartNumberMarker>", &pos, &v) == 0) {
        r->part_marker = pool_strndup(&r->pool, v.ptr, v.len);
        list_parts_page(r);
        return;
    }
    repl_begin(r);
}

static void
on_mpu_stamp(void *arg, const char *errstr, struct redisReply *reply)
{
    struct req *r = arg;

    qbusy_leave(r);
    if (r->fe == NULL) {
        req_maybe_free(r);
        return;
    }
    if (errstr != NULL) {
        fail(r, S3ERR_SLOW_DOWN, "The site's replication queue is unavailable. Please retry.");
        req_maybe_free(r);
        return;
    }
    if (reply != NULL && reply->type == REDIS_REPLY_STRING) {
        r->mpu_stamp = pool_strndup(&r->pool, reply->str, (size_t)reply->len);
    } else {
        log_warn("repl", "%s multipart upload of bucket=%.*s key=%.*s has no recorded stamp "
                         "(started before replication, or over a week ago); it gets a fresh one",
                 r->id, SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key));
    }
    list_parts_page(r);
}

static void
complete_prepare(struct req *r)
{
    const struct s3_param *id = s3addr_param(&r->addr, "uploadId");
    char *key = pool_printf(&r->pool, "s3tee:mpu:%.*s", SLICE_ARGS(id ? id->value : SLICE_LIT("")));
    const char *argv[2] = {"GET", key};
    size_t argvlen[2] = {3, strlen(key)};

    qbusy_enter(r);
    if (queue_command_argv(r->w->q, 2, argv, argvlen, on_mpu_stamp, r) != 0) {
        on_mpu_stamp(r, queue_err_unavailable, NULL);
    }
}

/* ---- DeleteObjects: each key the store deleted is recorded before the answer --------------- */

static void md_next(struct req *r);

static void
on_md_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    md_next(arg);
}

static void
md_failed(struct req *r, const char *why)
{
    log_error("repl", "%s DeleteObjects in bucket=%.*s: %zu of %zu deleted keys could not be "
                      "queued for replication (%s); first missing key=%.*s",
              r->id, SLICE_ARGS(r->addr.bucket), r->ndel - r->idel, r->ndel, why,
              SLICE_ARGS(r->del_keys[r->idel]));
    fail(r, S3ERR_SLOW_DOWN, "The objects were deleted at this site but not all deletes could be "
                             "queued for replication. Please retry the request.");
    req_maybe_free(r);
}

static void
on_md_commit(void *arg, const char *errstr)
{
    struct req *r = arg;

    qbusy_leave(r);
    r->began = 0;
    if (errstr != NULL) {
        md_failed(r, errstr);
        return;
    }
    r->idel++;
    md_next(r);
}

static void
on_md_begin(void *arg, const char *errstr, const struct queue_begin_result *res)
{
    struct req *r = arg;
    struct timeval tv = {0, 20000};
    struct mutation m;

    qbusy_leave(r);
    if (errstr != NULL) {
        md_failed(r, errstr);
        return;
    }
    if (res->verdict == QUEUE_BUSY) {
        if (timeutil_now_ms() >= r->lease_deadline_ms) {
            md_failed(r, "the key stayed busy");
            return;
        }
        if (r->retry_timer == NULL) {
            r->retry_timer = evtimer_new(r->w->evb, on_md_retry, r);
        }
        evtimer_add(r->retry_timer, &tv);
        return;
    }
    r->began = 1;
    memset(&m, 0, sizeof(m));
    m.op = MUT_DELETE;
    m.bucket = r->addr.bucket;
    m.key = r->del_keys[r->idel];
    m.stamp = slice_cstr(res->stamp);
    m.vv = slice_cstr(res->vv);
    m.etag = SLICE_LIT("");
    m.size = -1;
    m.tags = SLICE_NULL;
    m.parts = SLICE_LIT("");
    m.time_ms = timeutil_now_ms();
    qbusy_enter(r);
    if (queue_commit_local(r->w->q, &r->qw, &m, on_md_commit, r) != 0) {
        on_md_commit(r, queue_err_unavailable);
    }
}

static void
md_next(struct req *r)
{
    if (r->idel >= r->ndel) {
        send_held(r);
        req_maybe_free(r);
        return;
    }
    r->qw.key = r->del_keys[r->idel];
    r->qw.op = MUT_DELETE;
    r->qw.now_ms = timeutil_now_ms();
    if (r->retry_timer == NULL || !evtimer_pending(r->retry_timer, NULL)) {
        r->lease_deadline_ms = r->qw.now_ms + r->cf->lease_wait_ms;
    }
    qbusy_enter(r);
    if (queue_begin_local(r->w->q, &r->qw, on_md_begin, r) != 0) {
        on_md_begin(r, queue_err_unavailable, NULL);
    }
}

static void
md_start(struct req *r)
{
    size_t n = r->held ? evbuffer_get_length(r->held) : 0, pos = 0, cap = 0;
    const char *xml = n ? (const char *)evbuffer_pullup(r->held, (ev_ssize_t)n) : "";
    struct slice body = slice_make(xml, n), del, k;

    while (xml_text(body, "<Deleted>", "</Deleted>", &pos, &del) == 0) {
        size_t kp = 0;

        if (xml_text(del, "<Key>", "</Key>", &kp, &k) != 0) {
            continue;
        }
        if (r->ndel == cap) {
            struct slice *nk;

            cap = cap ? cap * 2 : 64;
            nk = pool_alloc(&r->pool, sizeof(*nk) * cap);
            if (r->ndel) {
                memcpy(nk, r->del_keys, sizeof(*nk) * r->ndel);
            }
            r->del_keys = nk;
        }
        r->del_keys[r->ndel++] = xml_unescape(&r->pool, k);
    }
    md_next(r);
}

/* "k1=v1&k2=v2" (URL-encoded) -> a Tagging body; NULL when a part does not decode. */
static char *
tagging_xml(struct pool *p, const char *tags)
{
    struct evbuffer *b = evbuffer_new();
    const char *s = tags;
    char *out = NULL;
    size_t len;

    evbuffer_add_printf(b, "<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet>");
    while (*s != '\0') {
        const char *amp = strchr(s, '&'), *end = amp ? amp : s + strlen(s);
        const char *eq = memchr(s, '=', (size_t)(end - s));
        struct slice k, v;

        if (uri_decode_pool(p, slice_make(s, (size_t)((eq ? eq : end) - s)), 0, &k) != 0 ||
            uri_decode_pool(p, eq ? slice_make(eq + 1, (size_t)(end - eq - 1)) : SLICE_LIT(""), 0,
                            &v) != 0) {
            evbuffer_free(b);
            return NULL;
        }
        evbuffer_add_printf(b, "<Tag><Key>%s</Key><Value>%s</Value></Tag>",
                            s3err_xml_escape(p, k.ptr, k.len), s3err_xml_escape(p, v.ptr, v.len));
        s = amp ? amp + 1 : end;
    }
    evbuffer_add_printf(b, "</TagSet></Tagging>");
    len = evbuffer_get_length(b);
    out = pool_alloc(p, len + 1);
    evbuffer_remove(b, out, len);
    out[len] = '\0';
    evbuffer_free(b);
    return out;
}

static void repl_after_store(struct req *r);

static void
on_tags_fixed(struct req *r, const char *errstr)
{
    if (errstr != NULL || r->aux_status < 200 || r->aux_status > 299) {
        /* the object is complete either way; the index keeps the newer tags, the store the
         * Create's until a resync or the next tag change */
        log_error("repl", "%s bucket=%.*s key=%.*s: the newer tags could not be set after the "
                          "multipart upload completed (%s); the store keeps its upload's tags",
                  r->id, SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key),
                  errstr ? errstr : pool_printf(&r->pool, "status %d", r->aux_status));
    }
    r->tags_fixed = 1;
    repl_after_store(r);
}

/*
 * A multipart upload takes its tags at Create, and Complete cannot change them. One whose
 * stamp is older than a tag change that already landed here (tags are a register of their
 * own) would leave the store with the older tags under an index that has the newer: set
 * the newer ones before the commit. The lease is still ours, so no other write is between.
 */
static void
repl_fix_tags(struct req *r)
{
    const char *path =
        pool_printf(&r->pool, "/%s/%s", uri_encode_pool(&r->pool, r->addr.bucket, 0),
                    uri_encode_pool(&r->pool, r->addr.key, 1));
    char *xml = tagging_xml(&r->pool, r->tags_override);

    log_info("repl", "%s bucket=%.*s key=%.*s: multipart upload %s is older than the tags here "
                     "(%s); setting those",
             r->id, SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key), r->stamp,
             r->cur.tag_stamp);
    if (xml == NULL ||
        aux_start_body(r, "PUT", path, "tagging", slice_cstr(xml), on_tags_fixed) != 0) {
        on_tags_fixed(r, "the tag set could not be sent");
    }
}

/*
 * A peer's tag change found no object here (NoSuchKey): the PUT it tagged has not arrived
 * yet, or a delete older than the tag change removed it. Tags are a register of their own,
 * so the change is still recorded in the index: a PUT older than it that lands later takes
 * these tags instead of its own (on_begin: tags_override). Dropping it instead lost the
 * change at this site whenever the origin no longer had the object either (chaos test,
 * seed 732378109: b tagged, a delete older than the tags removed the object at a and b,
 * then an older PUT came back everywhere with the tags at b and c only).
 */
static int
repl_tags_without_object(struct req *r)
{
    return r->role == ROLE_REPLICA && r->mop == MUT_TAGS && r->status == 404 &&
           slice_eq(held_error_code(r), SLICE_LIT("NoSuchKey"));
}

/* The store accepted the write (2xx): record it, then answer. */
static void
repl_after_store(struct req *r)
{
    struct mutation m;
    struct slice etag = resp_header(r, "etag");
    int rc;

    if (r->addr.op == S3_OP_CREATE_MULTIPART && r->role == ROLE_LOCAL) {
        mpu_save_stamp(r); /* not a mutation yet: Complete records it */
        return;
    }
    if ((r->is_complete || r->addr.op == S3_OP_COPY_OBJECT) && r->held != NULL) {
        size_t hn = evbuffer_get_length(r->held), pos = 0;
        const char *xml = hn ? (const char *)evbuffer_pullup(r->held, (ev_ssize_t)hn) : "";
        struct slice e;

        if (memmem(xml, hn, "<Error>", 7) != NULL) {
            /* S3 may answer 200 and then report the failure in the body */
            r->began = 0;
            queue_release(r->w->q, &r->qw, NULL, NULL);
            send_held(r);
            req_maybe_free(r);
            return;
        }
        if (xml_text(slice_make(xml, hn), "<ETag>", "</ETag>", &pos, &e) == 0 && e.len > 0) {
            etag = xml_unescape(&r->pool, e);
        }
        if (r->is_complete && !r->tags_fixed) {
            mpu_forget(r); /* the intent (s3tee:open) covers the stamp until the commit */
        }
    }
    if (r->is_complete && r->tags_override != NULL && !r->tags_fixed) {
        repl_fix_tags(r); /* comes back here once the store has the newer tags */
        return;
    }
    memset(&m, 0, sizeof(m));
    m.op = r->mop;
    m.bucket = r->addr.bucket;
    m.key = r->addr.key;
    m.stamp = slice_cstr(r->stamp);
    m.vv = slice_cstr(r->vv);
    m.etag = etag.ptr ? etag : SLICE_LIT("");
    m.size = r->mop == MUT_PUT && r->addr.op != S3_OP_COPY_OBJECT ? r->decoded : -1;
    if (r->capture != NULL) {
        size_t n = evbuffer_get_length(r->capture);
        const char *xml = (const char *)evbuffer_pullup(r->capture, (ev_ssize_t)n);

        r->tags = tags_from_xml(&r->pool, slice_make(xml ? xml : "", xml ? n : 0));
    }
    m.tags = r->tags ? slice_cstr(r->tags) : SLICE_NULL;
    m.parts = SLICE_LIT("");
    if (r->is_complete) {
        size_t pn = r->parts ? evbuffer_get_length(r->parts) : 0;
        const char *pp = pn ? (const char *)evbuffer_pullup(r->parts, (ev_ssize_t)pn) : "";

        m.parts = slice_make(pp, pn);
        m.size = r->parts ? r->parts_total : -1;
    }
    m.time_ms = timeutil_now_ms();
    qbusy_enter(r);
    if (r->role == ROLE_LOCAL) {
        rc = queue_commit_local(r->w->q, &r->qw, &m, on_commit, r);
    } else {
        rc = queue_commit_replica(r->w->q, &r->qw, &m, on_commit, r);
    }
    if (rc != 0) {
        on_commit(r, queue_err_unavailable);
    }
}

/* ---- bucket-level operations at every site ------------------------------------------------- */

/*
 * CreateBucket, DeleteBucket and versioning or object-lock changes on a replicated bucket
 * run at every site before the client gets an answer (DESIGN.md, "Bucket-level
 * operations"): S3 has no two-phase commit, so the order is chosen to leave a state a retry
 * finishes, never one that loses data:
 *   create / config: local store first (its refusal is the answer), then every peer;
 *   delete: every peer must report the bucket empty first, then the local store (which
 *           checks itself), then every peer.
 * A peer that fails or does not answer in bucket_op_timeout turns the answer into 503 naming
 * it; the operation is idempotent at each site, so the client's retry completes it.
 */
static int
bucket_fan_op(const struct req *r)
{
    switch (r->addr.op) {
    case S3_OP_CREATE_BUCKET:
    case S3_OP_DELETE_BUCKET:
        return 1;
    case S3_OP_PUT_BUCKET_CONFIG:
        return r->addr.subresource != NULL && (strcmp(r->addr.subresource, "versioning") == 0 ||
                                               strcmp(r->addr.subresource, "object-lock") == 0);
    default:
        return 0;
    }
}

/* The sites BUCKET replicates to: its rule's list, else every other site. */
static char **
bucket_fan_sites(struct req *r, size_t *n)
{
    const struct proxy_bucket_rule *rule =
        proxy_conf_bucket(r->cf, r->addr.bucket.ptr, r->addr.bucket.len);
    char **out;
    size_t i;

    if (rule != NULL && rule->has_mode && rule->peers != NULL) {
        *n = rule->npeers;
        return rule->peers;
    }
    out = pool_alloc(&r->pool, sizeof(*out) * (r->cf->nsites ? r->cf->nsites : 1));
    *n = 0;
    for (i = 0; i < r->cf->nsites; i++) {
        if (strcmp(r->cf->sites[i].id, r->cf->site_id) != 0) {
            out[(*n)++] = r->cf->sites[i].id;
        }
    }
    return out;
}

/* Did the peer's answer leave the bucket in the state the operation asks for? */
static int
bucket_fan_ok(const struct req *r, const struct peerop_result *res)
{
    if (res->status >= 200 && res->status < 300) {
        return 1;
    }
    if (r->addr.op == S3_OP_CREATE_BUCKET) {
        return res->status == 409 && strcmp(res->code, "BucketAlreadyOwnedByYou") == 0;
    }
    if (r->addr.op == S3_OP_DELETE_BUCKET) {
        return res->status == 404 && strcmp(res->code, "NoSuchBucket") == 0;
    }
    return 0;
}

/* "site b (cannot connect), site c (HTTP 403 AccessDenied)" for the failed peers, or NULL. */
static char *
bucket_fan_failures(struct req *r, const struct peerop_result *res, size_t n, int checking)
{
    char *out = NULL;
    size_t i;

    for (i = 0; i < n; i++) {
        const char *why;
        int fine = checking ? (res[i].status == 200 && res[i].key_count == 0) ||
                                  (res[i].status == 404 && strcmp(res[i].code, "NoSuchBucket") == 0)
                            : bucket_fan_ok(r, &res[i]);

        if (fine) {
            continue;
        }
        if (res[i].errstr != NULL) {
            why = res[i].errstr;
        } else if (checking && res[i].status == 200) {
            why = "holds objects";
        } else {
            why = pool_printf(&r->pool, "HTTP %d %s", res[i].status,
                              res[i].code[0] ? res[i].code : "");
        }
        out = out ? pool_printf(&r->pool, "%s, site %s (%s)", out, res[i].site, why)
                  : pool_printf(&r->pool, "site %s (%s)", res[i].site, why);
    }
    return out;
}

static void
on_bucket_checked(void *arg, const struct peerop_result *res, size_t n)
{
    struct req *r = arg;
    char *bad;
    size_t i;
    int full = 0;

    r->peerop = NULL;
    if (r->fe == NULL) {
        req_maybe_free(r); /* the client left: nothing was deleted anywhere */
        return;
    }
    bad = bucket_fan_failures(r, res, n, 1);
    for (i = 0; i < n; i++) {
        full |= res[i].status == 200 && res[i].key_count != 0;
    }
    if (bad != NULL) {
        log_warn("req", "%s DeleteBucket bucket=%.*s refused, nothing deleted: %s", r->id,
                 SLICE_ARGS(r->addr.bucket), bad);
        if (full) {
            fail(r, S3ERR_BUCKET_NOT_EMPTY,
                 pool_printf(&r->pool, "The bucket you tried to delete is not empty at %s.", bad));
        } else {
            fail(r, S3ERR_SERVICE_UNAVAILABLE,
                 pool_printf(&r->pool, "The bucket was not deleted: %s could not confirm it is "
                                       "empty. Please retry.", bad));
        }
        req_maybe_free(r);
        return;
    }
    r->bucket_checked = 1;
    continue_start(r);
    req_maybe_free(r);
}

static void
bucket_fan_start(struct req *r, const char *method, const char *query, struct slice body,
                 peerop_done_fn done)
{
    static const struct slice pass[] = {
        SLICE_LIT("content-md5"),
        SLICE_LIT("content-type"),
        SLICE_LIT("x-amz-acl"),
        SLICE_LIT("x-amz-bucket-object-lock-enabled"),
        SLICE_LIT("x-amz-object-ownership"),
    };
    struct sigv4_header *sh = pool_alloc(&r->pool, sizeof(*sh) * (r->nhdrs + 1));
    struct peerop_args a;
    char **sites, err[256];
    size_t n = 0, nsites, i;

    for (i = 0; i < r->nhdrs; i++) {
        struct slice name = r->hdrs[i].name;

        if (body.len == 0 && (slice_eq_nocase(name, SLICE_LIT("content-md5")) ||
                              slice_eq_nocase(name, SLICE_LIT("content-type")))) {
            continue; /* they describe a body the peers do not get */
        }
        if (in_table(name, pass, sizeof(pass) / sizeof(pass[0])) ||
            slice_starts_with_nocase(name, SLICE_LIT("x-amz-grant-"))) {
            sh[n++] = (struct sigv4_header){lower_dup(&r->pool, name), r->hdrs[i].value};
        }
    }
    memset(&a, 0, sizeof(a));
    a.method = method;
    a.path = pool_printf(&r->pool, "/%.*s", SLICE_ARGS(r->addr.bucket));
    a.query = query;
    a.headers = sh;
    a.nheaders = n;
    a.body = body;
    a.timeout_ms = r->cf->bucket_op_timeout_ms;
    sites = bucket_fan_sites(r, &nsites);
    r->peerop = peerop_start(r->w->evb, &r->w->keys, r->cf, sites, nsites, &a, done, r, err,
                             sizeof(err));
    if (r->peerop == NULL) {
        log_error("req", "%s %s bucket=%.*s cannot reach the other sites: %s", r->id,
                  s3_op_name(r->addr.op), SLICE_ARGS(r->addr.bucket), err);
        fail(r, S3ERR_SERVICE_UNAVAILABLE,
             pool_printf(&r->pool, "The request cannot be sent to every site: %s.", err));
    }
}

static void
bucket_fan_check_empty(struct req *r)
{
    bucket_fan_start(r, "GET", "list-type=2&max-keys=1", SLICE_LIT(""), on_bucket_checked);
    req_maybe_free(r);
}

static void
on_bucket_fanned(void *arg, const struct peerop_result *res, size_t n)
{
    struct req *r = arg;
    char *bad;

    r->peerop = NULL;
    bad = bucket_fan_failures(r, res, n, 0);
    if (bad == NULL) {
        log_info("req", "%s %s bucket=%.*s done at this site (%s) and %zu other site(s)", r->id,
                 s3_op_name(r->addr.op), SLICE_ARGS(r->addr.bucket), r->cf->site_id, n);
        send_held(r);
    } else {
        log_warn("req", "%s %s bucket=%.*s done at this site (%s) but not at %s; a retry "
                        "finishes it",
                 r->id, s3_op_name(r->addr.op), SLICE_ARGS(r->addr.bucket), r->cf->site_id, bad);
        fail(r, S3ERR_SERVICE_UNAVAILABLE,
             pool_printf(&r->pool, "%s was applied at this site (%s) but not at %s. Please "
                                   "retry: the request is safe to repeat.",
                         s3_op_name(r->addr.op), r->cf->site_id, bad));
    }
    req_maybe_free(r);
}

/* The local store answered the operation (its answer is held). */
static void
bucket_fan_after_store(struct req *r)
{
    struct peerop_result local;
    struct slice code = held_error_code(r);
    const char *query = "";
    struct slice body = SLICE_LIT("");

    memset(&local, 0, sizeof(local));
    local.status = r->status;
    if (code.len < sizeof(local.code)) {
        memcpy(local.code, code.ptr, code.len);
    }
    if (!bucket_fan_ok(r, &local)) {
        send_held(r); /* the store's refusal is the answer; the peers are not asked */
        return;
    }
    /* CreateBucket's body (a LocationConstraint) stays here: each store has its own region */
    if (r->addr.op == S3_OP_PUT_BUCKET_CONFIG) {
        size_t cn = r->capture ? evbuffer_get_length(r->capture) : 0;

        query = pool_printf(&r->pool, "%s=", r->addr.subresource);
        body = slice_make(cn ? (const char *)evbuffer_pullup(r->capture, (ev_ssize_t)cn) : "", cn);
    }
    bucket_fan_start(r, pool_strndup(&r->pool, r->method.ptr, r->method.len), query, body,
                     on_bucket_fanned);
}

/* ---- front end entry points ------------------------------------------------------------------ */

static int xml_guard_start(struct req *r);

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
    if (signed_request < 0 || setup_body(r, &ao, signed_request) != 0 || repl_decide(r) != 0) {
        req_maybe_free(r);
        return;
    }
    if ((r->addr.op == S3_OP_DELETE_OBJECTS || r->addr.op == S3_OP_COMPLETE_MULTIPART) &&
        r->has_body && xml_guard_start(r) != 0) {
        req_maybe_free(r);
        return;
    }
    r->expect_continue = a->expect_continue;
    if (!r->has_body) {
        r->body_ended = 1;
        r->body_verified = 1;
    }
    if (r->multi_delete) {
        continue_start(r); /* recorded key by key once the store answered (md_start) */
        return;
    }
    if (r->bucket_fan && r->addr.op == S3_OP_DELETE_BUCKET) {
        bucket_fan_check_empty(r); /* then the local store, then the peers */
        return;
    }
    if (r->copy_rewrite) {
        struct slice sb, sk, sv;
        char *path, *query = pool_strndup(&r->pool, "", 0);

        parse_copy_source(r, hdr_value(r, "x-amz-copy-source"), &sb, &sk, &sv);
        path = pool_printf(&r->pool, "/%.*s/%s", SLICE_ARGS(sb), uri_encode_pool(&r->pool, sk, 1));
        if (sv.ptr != NULL) {
            query = pool_printf(&r->pool, "versionId=%.*s", SLICE_ARGS(sv));
        }
        if (aux_start(r, "HEAD", path, query, on_copy_head) != 0) {
            fail(r, S3ERR_INTERNAL_ERROR, NULL);
            req_maybe_free(r);
        }
        return;
    }
    if (r->is_complete && r->role == ROLE_LOCAL) {
        complete_prepare(r); /* then ListParts, then repl_begin */
        return;
    }
    /* A replica's Create and UploadPart (and the Abort of an upload that failed half-way)
     * carry the entry's stamp but are no write of the key: only its Complete records it.
     * Recording an Abort made the retried upload's Complete look stale: lost at this site. */
    if (r->role == ROLE_LOCAL || (r->role == ROLE_REPLICA && local_recorded(r->addr.op) &&
                                  r->addr.op != S3_OP_CREATE_MULTIPART)) {
        repl_begin(r); /* continue_start() once the queue said go */
        return;
    }
    if (r->site_key != NULL && r->w->q != NULL &&
        (r->addr.op == S3_OP_HEAD_OBJECT || r->addr.op == S3_OP_GET_OBJECT)) {
        index_read(r); /* then continue_start() */
        return;
    }
    continue_start(r);
}

/* 1 if V can go out as a header value (index fields are written by s3tee, but say so). */
static int
header_safe_value(struct slice v)
{
    size_t i;

    for (i = 0; i < v.len; i++) {
        if ((unsigned char)v.ptr[i] < 0x20 || v.ptr[i] == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/*
 * A peer site's HEAD or GET (resync) also gets this site's index entry of the key, which
 * the store cannot tell: x-s3tee-stamp, -vv, -tag-stamp, -tags, and x-s3tee-deleted: 1 for
 * a tombstone (then the store answers 404). No entry: no x-s3tee-* headers. Best effort:
 * an unreachable Redis leaves the headers out and resync falls back on the store's stamp.
 */
static void
on_index_read(void *arg, const char *errstr, struct redisReply *reply)
{
    static const struct {
        const char *field, *header;
    } map[] = {{"st", "x-s3tee-stamp"},        {"vv", "x-s3tee-vv"},
               {"tst", "x-s3tee-tag-stamp"},   {"tags", "x-s3tee-tags"},
               {"del", "x-s3tee-deleted"}};
    struct req *r = arg;
    size_t i, j;

    qbusy_leave(r);
    if (r->fe == NULL) {
        req_maybe_free(r);
        return;
    }
    for (i = 0; errstr == NULL && reply != NULL && reply->type == REDIS_REPLY_ARRAY &&
                i + 1 < reply->elements;
         i += 2) {
        redisReply *f = reply->element[i], *v = reply->element[i + 1];

        for (j = 0; j < sizeof(map) / sizeof(map[0]); j++) {
            if (f->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING && v->len > 0 &&
                strcmp(f->str, map[j].field) == 0 &&
                header_safe_value(slice_make(v->str, (size_t)v->len))) {
                add_resp_header(r, slice_cstr(map[j].header),
                                pool_slice_dup(&r->pool, slice_make(v->str, (size_t)v->len)));
            }
        }
    }
    continue_start(r);
}

static void
index_read(struct req *r)
{
    size_t len = 8 + r->addr.bucket.len + 1 + r->addr.key.len; /* keys may hold any byte */
    char *key = pool_alloc(&r->pool, len);
    const char *argv[2] = {"HGETALL", key};
    size_t argvlen[2] = {7, len};

    memcpy(key, "s3tee:o:", 8);
    memcpy(key + 8, r->addr.bucket.ptr, r->addr.bucket.len);
    key[8 + r->addr.bucket.len] = '/';
    memcpy(key + 9 + r->addr.bucket.len, r->addr.key.ptr, r->addr.key.len);

    qbusy_enter(r);
    if (queue_command_argv(r->w->q, 2, argv, argvlen, on_index_read, r) != 0) {
        qbusy_leave(r);
        continue_start(r);
    }
}

/* The copy source's metadata is in r->aux_hdrs now (or the HEAD failed: the store will
 * answer the copy itself with the right error). */
static void
on_copy_head(struct req *r, const char *errstr)
{
    if (errstr != NULL || r->aux_status != 200) {
        r->copy_rewrite = 0;
    }
    repl_begin(r);
}

/* Forwards to the store: straight from req_start, or once the queue granted the write. */
static void
continue_start(struct req *r)
{
    if (r->up_length == 0 && r->has_body && !r->body_verified) {
        /* an aws-chunked body of 0 payload bytes: nothing to hold back from the store, which
         * would commit the empty object at once; it is asked once the framing verified */
        r->start_deferred = 1;
        if (r->body_ended) {
            if (!r->fence_pending) {
                repl_fence(r); /* verified while we waited for the queue: the lease check */
            }
        } else if (r->expect_continue && r->fe != NULL) {
            r->ops->send_continue(r->fe);
        }
        return;
    }
    if (start_upstream(r) != 0) {
        req_maybe_free(r);
        return;
    }
    log_debug("req", "%s %.*s bucket=%.*s key=%.*s op=%s -> store", r->id, SLICE_ARGS(r->method),
              SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key), s3_op_name(r->addr.op));
    touch(r);
    if (r->expect_continue && r->has_body && r->fe != NULL) {
        r->ops->send_continue(r->fe);
    }
    if (r->body_ended && !r->body_verified && !r->fence_pending && r->has_body) {
        /* the whole body arrived and verified while we waited for the queue */
        repl_fence(r);
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

/* The XML body broke a bound (xmlguard.h): 400, and the store transfer is cancelled. */
static void
xml_refused(struct req *r)
{
    enum s3err e = r->xml->verdict == XMLGUARD_TOO_LARGE ? S3ERR_ENTITY_TOO_LARGE
                                                         : S3ERR_MALFORMED_XML;

    log_info("req", "%s %s body refused bucket=%.*s key=%.*s: %s", r->id,
             s3_op_name(r->addr.op), SLICE_ARGS(r->addr.bucket), SLICE_ARGS(r->addr.key),
             r->xml->errstr);
    fail(r, e, r->xml->errstr);
}

/* DeleteObjects and CompleteMultipartUpload: bounds checked as the body streams. */
static int
xml_guard_start(struct req *r)
{
    int del = r->addr.op == S3_OP_DELETE_OBJECTS;

    r->xml = pool_alloc(&r->pool, sizeof(*r->xml));
    xmlguard_init(r->xml, r->cf->max_xml_body, del ? "Object" : "Part", del ? 1000 : 10000);
    if (r->up_length > r->cf->max_xml_body) {
        r->xml->verdict = XMLGUARD_TOO_LARGE;
        r->xml->errstr = "Your XML request body is larger than the proxy accepts (max_xml_body).";
        xml_refused(r);
        return -1;
    }
    return 0;
}

static int
check_payload(struct req *r, const char *p, size_t n)
{
    if (n == 0) {
        return 0;
    }
    r->decoded += (int64_t)n;
    if (r->up_length >= 0 && r->decoded > r->up_length) {
        fail(r, S3ERR_INCOMPLETE_BODY, "The request body is longer than its declared length.");
        return -1;
    }
    if (r->xml != NULL && xmlguard_feed(r->xml, p, n) != XMLGUARD_OK) {
        xml_refused(r);
        return -1;
    }
    if (r->sha != NULL) {
        EVP_DigestUpdate(r->sha, p, n);
    }
    if (r->hdr_sum.alg != CHECKSUM_NONE) {
        checksum_update(&r->hdr_sum, p, n);
    }
    if (r->capture != NULL) {
        if (evbuffer_get_length(r->capture) + n > 64 * 1024) {
            fail(r, S3ERR_INVALID_REQUEST, r->bucket_fan ? "The configuration document is larger than 64 KiB."
                                                         : "The tagging document is larger than 64 KiB.");
            return -1;
        }
        evbuffer_add(r->capture, p, n);
    }
    return 0;
}

static int
add_payload(struct req *r, const char *p, size_t n)
{
    if (n == 0) {
        return 0;
    }
    if (check_payload(r, p, n) != 0) {
        return -1;
    }
    evbuffer_add(r->upbuf, p, n);
    return 0;
}

static void after_payload(struct req *r);

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
    after_payload(r);
}

/* Back-pressure on the client and a nudge to the store transfer after body bytes came. */
static void
after_payload(struct req *r)
{
    if (!r->body_paused && evbuffer_get_length(r->upbuf) >= (size_t)r->cf->max_inflight_body) {
        r->body_paused = 1;
        r->ops->pause_body(r->fe);
    }
    if (r->xfer != NULL) {
        upstream_resume_body(r->xfer);
    }
}

/* A chain moved from the client's buffer keeps its whole allocation (up to 256 KiB for the
 * front end's 128 KiB reads) however few bytes it holds; moving only pieces of at least this
 * size keeps upbuf's memory within 4 times max_inflight_body. Smaller pieces are copied. */
#define REQ_MOVE_MIN (64 * 1024)

int
req_body_movable(const struct req *r)
{
    return r->mode != BODY_CHUNKED; /* aws-chunked bodies are decoded into new bytes */
}

void
req_body_move(struct req *r, struct evbuffer *src, size_t len)
{
    size_t left = len;

    if (r->fe == NULL || r->body_ended) {
        evbuffer_drain(src, len);
        return;
    }
    r->raw_in += (int64_t)len;
    r->raw_uncredited += len;
    while (left > 0) {
        struct evbuffer_iovec v;
        size_t n;

        if (evbuffer_peek(src, -1, NULL, &v, 1) < 1) {
            break;
        }
        n = v.iov_len < left ? v.iov_len : left;
        if (check_payload(r, v.iov_base, n) != 0) {
            evbuffer_drain(src, left);
            req_maybe_free(r);
            return;
        }
        if (n >= REQ_MOVE_MIN) {
            evbuffer_remove_buffer(src, r->upbuf, n); /* the chain changes hands */
        } else {
            evbuffer_add(r->upbuf, v.iov_base, n);
            evbuffer_drain(src, n);
        }
        left -= n;
    }
    after_payload(r);
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
    if (r->xml != NULL && xmlguard_end(r->xml) != XMLGUARD_OK) {
        xml_refused(r);
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
    if (r->began && r->keep != NULL) {
        return; /* the loser is being kept: continue_start() runs the fence after it */
    }
    if (r->began) {
        repl_fence(r); /* body_verified once the lease is confirmed */
        return;
    }
    if (r->xfer == NULL && r->role != ROLE_NONE && !r->start_deferred) {
        return; /* still waiting for the queue: continue_start() releases the body */
    }
    r->body_verified = 1;
    if (r->start_deferred) {
        r->start_deferred = 0;
        continue_start(r);
        return;
    }
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

/* How many upbuf bytes may go to the store now, at most MAX. 0 when none: *RET is then what
 * read_body/move_body answer (0 once the whole body is out, else UPSTREAM_PAUSE). */
static size_t
body_sendable(struct req *r, size_t max, size_t *ret)
{
    size_t avail = evbuffer_get_length(r->upbuf);

    if (!r->body_verified && (r->up_length < 0 || r->sent_up + (int64_t)avail >= r->up_length)) {
        /* the fence: the body's last byte waits for verification (and the lease check);
         * bytes before it go at once, so whole chains of upbuf can change hands */
        avail = avail > 0 ? avail - 1 : 0;
    }
    *ret = avail == 0 && r->body_verified && r->sent_up == r->up_length ? 0 : UPSTREAM_PAUSE;
    return avail < max ? avail : max;
}

/* Accounts N body bytes handed to the store; returns what read_body/move_body answer. */
static size_t
body_sent(struct req *r, int n)
{
    if (n <= 0) {
        return UPSTREAM_PAUSE;
    }
    r->sent_up += n;
    touch(r);
    credit_client(r);
    if (r->began && timeutil_now_ms() - r->qw.now_ms > r->cf->lease_ms / 3) {
        r->qw.now_ms = timeutil_now_ms(); /* long uploads keep the key while bytes flow */
        queue_renew_lease(r->w->q, &r->qw, NULL, NULL);
    }
    return (size_t)n;
}

static size_t
xfer_read_body(void *arg, char *buf, size_t max)
{
    struct req *r = arg;
    size_t ret, n = body_sendable(r, max, &ret);

    return n == 0 ? ret : body_sent(r, evbuffer_remove(r->upbuf, buf, n));
}

/* xfer_read_body without the copy: whole chains of upbuf change hands. */
static size_t
xfer_move_body(void *arg, struct evbuffer *dst, size_t max)
{
    struct req *r = arg;
    size_t ret, n = body_sendable(r, max, &ret);

    return n == 0 ? ret : body_sent(r, evbuffer_remove_buffer(r->upbuf, dst, n));
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
    /* a peer site reading for resync sees the stamps the store holds; clients never do */
    if (drop_response_header(name) &&
        (r->site_key == NULL || !slice_starts_with_nocase(name, SLICE_LIT("x-amz-meta-s3tee-")))) {
        return;
    }
    add_resp_header(r, name, value);
}

/* Store answers held back (write results, bucket lists) are XML of a few KiB; this bounds them. */
#define REQ_HELD_MAX (4 * 1024 * 1024)

static int
list_bucket_allowed(const struct req *r, struct slice name)
{
    size_t i;

    for (i = 0; i < r->nlist_allowed; i++) {
        if (slice_eq(name, slice_cstr(r->list_allowed[i]))) {
            return 1;
        }
    }
    return 0;
}

/* ListBuckets answered for a bucket-limited key: drop the <Bucket> elements of buckets it may
 * not use (AWS shows an IAM user limited by policy only what it may list; the store's account
 * would otherwise leak every bucket name). Anything that is not a 200 list passes as it is. An
 * answer too large to hold is refused rather than passed unfiltered. */
static void
list_buckets_filter(struct req *r)
{
    size_t n = r->held ? evbuffer_get_length(r->held) : 0, pos = 0, kept_to = 0;
    const char *xml;
    struct evbuffer *out;
    struct slice body, el;
    int dropped = 0;

    if (r->status != 200) {
        return;
    }
    if (r->held_truncated) {
        log_error("req", "%s ListBuckets answer from the store passed %d bytes; refused rather "
                         "than shown unfiltered to access_key=%s",
                  r->id, REQ_HELD_MAX, r->access_key);
        evbuffer_drain(r->held, n);
        fail(r, S3ERR_INTERNAL_ERROR, "The bucket list is too large to filter for this key.");
        return;
    }
    xml = n ? (const char *)evbuffer_pullup(r->held, (ev_ssize_t)n) : "";
    body = slice_make(xml, n);
    out = evbuffer_new();
    if (out == NULL) {
        return;
    }
    for (;;) {
        size_t start, np = 0;
        const char *open = memmem(xml + pos, n - pos, "<Bucket>", 8);
        struct slice name;

        if (open == NULL || xml_text(body, "<Bucket>", "</Bucket>", &pos, &el) != 0) {
            break;
        }
        start = (size_t)(open - xml);
        if (xml_text(el, "<Name>", "</Name>", &np, &name) == 0 &&
            list_bucket_allowed(r, xml_unescape(&r->pool, name))) {
            continue;
        }
        evbuffer_add(out, xml + kept_to, start - kept_to);
        kept_to = pos;
        dropped++;
    }
    evbuffer_add(out, xml + kept_to, n - kept_to);
    evbuffer_free(r->held);
    r->held = out;
    r->resp_length = (int64_t)evbuffer_get_length(out);
    if (dropped > 0) {
        log_debug("req", "%s ListBuckets for access_key=%s: %d buckets it may not use left out",
                  r->id, r->access_key, dropped);
    }
}

static void
xfer_on_head(void *arg, int status)
{
    struct req *r = arg;

    r->upstream_us = upstream_first_byte_us(r->xfer);
    touch(r);
    if (r->addr.op == S3_OP_ABORT_MULTIPART && status / 100 == 2 && r->site_key == NULL) {
        mpu_forget(r);
    }
    if (r->began || r->multi_delete || r->bucket_fan || r->list_filter) {
        r->status = status; /* answered after the commit or the peers (send_held) */
        return;
    }
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

    if (r->began || r->multi_delete || r->bucket_fan || r->list_filter) {
        /* answers to writes and bucket lists are small (XML); bounded anyway */
        if (r->held == NULL) {
            r->held = evbuffer_new();
        }
        if (evbuffer_get_length(r->held) + len <= REQ_HELD_MAX) {
            evbuffer_add(r->held, data, len);
        } else {
            r->held_truncated = 1;
        }
        return 0;
    }
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
    if (r->multi_delete && errstr == NULL) {
        if (r->status >= 200 && r->status < 300) {
            md_start(r);
        } else {
            send_held(r);
        }
        req_maybe_free(r);
        return;
    }
    if (r->bucket_fan && errstr == NULL) {
        bucket_fan_after_store(r); /* the peers next, then the held answer */
        req_maybe_free(r);
        return;
    }
    if (r->list_filter && errstr == NULL) {
        list_buckets_filter(r);
        send_held(r);
        req_maybe_free(r);
        return;
    }
    if (r->began && errstr == NULL && r->status >= 200 && r->status < 300) {
        repl_after_store(r); /* answers once the write is queued */
        req_maybe_free(r);
        return;
    }
    if (r->began && errstr == NULL && repl_tags_without_object(r)) {
        r->tags_no_object = 1;
        repl_after_store(r); /* records the tag register; answers "applied" once it is */
        req_maybe_free(r);
        return;
    }
    if (r->began && errstr == NULL) {
        r->began = 0; /* the store refused: nothing to record */
        queue_release(r->w->q, &r->qw, NULL, NULL);
        send_held(r);
        req_maybe_free(r);
        return;
    }
    if (errstr == upstream_err_sink) {
        log_info("req", "%s client stopped taking the response to %s bucket=%.*s key=%.*s after "
                        "%lld bytes; connection closed",
                 r->id, s3_op_name(r->addr.op), SLICE_ARGS(r->addr.bucket),
                 SLICE_ARGS(r->addr.key), (long long)r->bytes_out);
        release_fe(r, 0);
    } else if (errstr != NULL) {
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

/* A large body passing straight through (a GET) can be spliced from the store's socket into
 * the client's when the front end has one to give (upstream.h sink_fd). */
static int
xfer_sink_fd(void *arg, int64_t *stall_ms)
{
    struct req *r = arg;
    int fd;

    if (!r->cf->upstream_splice || r->fe == NULL || r->ops->raw_fd == NULL || !r->head_sent ||
        r->began || r->multi_delete || r->bucket_fan || r->list_filter) {
        return UPSTREAM_SINK_NONE;
    }
    fd = r->ops->raw_fd(r->fe);
    if (fd == REQ_RAW_LATER) {
        return UPSTREAM_SINK_LATER;
    }
    if (fd < 0) {
        return UPSTREAM_SINK_NONE;
    }
    *stall_ms = r->cf->client_send_timeout_ms;
    return fd;
}

static void
xfer_on_sunk(void *arg, size_t n)
{
    struct req *r = arg;

    touch(r);
    r->bytes_out += (int64_t)n;
}

static const struct upstream_xfer_ops xfer_ops = {
    .read_body = xfer_read_body,
    .move_body = xfer_move_body,
    .on_header = xfer_on_header,
    .on_head = xfer_on_head,
    .on_body = xfer_on_body,
    .on_done = xfer_on_done,
    .sink_fd = xfer_sink_fd,
    .on_sunk = xfer_on_sunk,
};
