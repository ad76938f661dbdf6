/* keep - the loser of a conflict kept before a replica write overwrites it (see keep.h). */
#include "proxy/keep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/pool.h"
#include "common/upstream.h"
#include "common/xalloc.h"
#include "proxy/upsign.h"
#include "signing/creds.h"
#include "signing/uri.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* A CopyObject answer is a short XML document; more is not read. */
#define KEEP_MAX_ANSWER (64 * 1024)
/* A server-side copy gets the first-byte timeout plus one second per this many bytes
 * (RGW copies at hundreds of MB/s on one host; this leaves room for a slow store). */
#define KEEP_COPY_BYTES_PER_S (32LL * 1024 * 1024)

enum keep_state {
    KS_HEAD = 0, /* HEAD of the loser: versioned? still there? how big? */
    KS_COPY,     /* CopyObject into the conflict bucket */
};

struct keep {
    struct pool pool;              /* copies of the arguments, names, answers (owned) */
    const struct proxy_conf *cf;   /* store URL and key, conflict bucket (borrowed) */
    struct upstream *up;           /* the worker's store connections (borrowed) */
    struct sigv4_key_cache *keys;  /* the worker's derived keys (borrowed) */
    struct keep_args a;            /* pool copies */
    enum keep_state state;         /* request in flight */
    struct upstream_xfer *x;       /* live store request, NULL between requests */
    struct event *timer;           /* deadline of the request in flight (owned) */
    int status;                    /* its response status, 0 none yet */
    struct slice etag;             /* HEAD: ETag (pool) */
    struct slice stamp;            /* HEAD: x-amz-meta-s3tee-stamp (pool), SLICE_NULL none */
    struct slice version_id;       /* HEAD: x-amz-version-id (pool), SLICE_NULL none */
    int64_t length;                /* HEAD: Content-Length, -1 unknown */
    struct evbuffer *answer;       /* COPY: response body, first KEEP_MAX_ANSWER bytes (owned) */
    keep_done_fn done;
    void *arg;
};

static void
keep_free(struct keep *k)
{
    if (k->x != NULL) {
        upstream_abort(k->x);
    }
    event_free(k->timer);
    evbuffer_free(k->answer);
    pool_deinit(&k->pool);
    free(k);
}

void
keep_cancel(struct keep *k)
{
    if (k != NULL) {
        keep_free(k);
    }
}

/* "bucket=B key=K loser STAMP (site HERE) winner STAMP from site S": every line has it. */
#define WHO_FMT "bucket=%.*s key=%.*s: loser %s (this site), winner %s from site %s"
#define WHO_ARGS(k)                                                                              \
    SLICE_ARGS((k)->a.bucket), SLICE_ARGS((k)->a.key), (k)->a.loser_stamp, (k)->a.winner_stamp,  \
        (k)->a.winner_site

static void
finish(struct keep *k, enum keep_outcome o, const char *kept_at, const char *why)
{
    struct keep_result res = {o, kept_at ? kept_at : "", why ? why : ""};
    const char *cb = k->cf->conflict_bucket ? k->cf->conflict_bucket : "(none)";

    k->x = NULL; /* finished, or aborted by the caller of finish() */
    evtimer_del(k->timer);
    switch (o) {
    case KEEP_COPIED:
    case KEEP_VERSIONED:
        log_info("keep", "%s conflict " WHO_FMT "; loser kept at %s", k->a.req_id, WHO_ARGS(k),
                 res.kept_at);
        break;
    case KEEP_NOT_KEPT:
        /* without a conflict bucket the operator chose not to keep losers: a warning */
        log_msg(k->cf->conflict_bucket ? LOG_ERROR : LOG_WARN, "keep",
                "%s conflict " WHO_FMT "; the loser's bytes are NOT kept (conflict bucket %s): "
                "%s; the replica write goes ahead",
                k->a.req_id, WHO_ARGS(k), cb, res.why);
        break;
    case KEEP_FAILED:
        log_error("keep", "%s conflict " WHO_FMT "; could not keep the loser in conflict bucket "
                          "%s: %s; the replica write is refused (503) and retried by site %s",
                  k->a.req_id, WHO_ARGS(k), cb, res.why, k->a.winner_site);
        break;
    }
    k->done(k->arg, &res);
    keep_free(k);
}

/* ---- store requests --------------------------------------------------------------------- */

static size_t
on_read_body(void *arg, char *buf, size_t max)
{
    (void)arg;
    (void)buf;
    (void)max;
    return 0;
}

static void
on_header(void *arg, struct slice name, struct slice value)
{
    struct keep *k = arg;
    uint64_t n;

    if (k->state != KS_HEAD) {
        return;
    }
    if (slice_eq_nocase(name, SLICE_LIT("etag"))) {
        k->etag = pool_slice_dup(&k->pool, slice_trim(value));
    } else if (slice_eq_nocase(name, SLICE_LIT("x-amz-meta-s3tee-stamp"))) {
        k->stamp = pool_slice_dup(&k->pool, slice_trim(value));
    } else if (slice_eq_nocase(name, SLICE_LIT("x-amz-version-id"))) {
        k->version_id = pool_slice_dup(&k->pool, slice_trim(value));
    } else if (slice_eq_nocase(name, SLICE_LIT("content-length")) &&
               slice_to_u64(slice_trim(value), &n) == 0 && n <= INT64_MAX) {
        k->length = (int64_t)n;
    }
}

static void
on_head(void *arg, int status)
{
    struct keep *k = arg;

    k->status = status;
}

static int
on_body(void *arg, const char *data, size_t len)
{
    struct keep *k = arg;

    if (evbuffer_get_length(k->answer) + len <= KEEP_MAX_ANSWER) {
        evbuffer_add(k->answer, data, len);
    }
    return 0;
}

static void on_done(void *arg, const char *errstr);

static const struct upstream_xfer_ops keep_ops = {
    .read_body = on_read_body,
    .on_header = on_header,
    .on_head = on_head,
    .on_body = on_body,
    .on_done = on_done,
};

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct keep *k = arg;

    (void)fd;
    (void)what;
    upstream_abort(k->x);
    finish(k, KEEP_FAILED, NULL,
           k->state == KS_HEAD ? "the store did not answer the HEAD in time"
                               : "the store did not finish the copy in time");
}

/* Sends METHOD PATH with the N headers in SH (room for three more) and arms the deadline. */
static int
send_store(struct keep *k, const char *method, const char *path, struct sigv4_header *sh, size_t n,
           int64_t timeout_ms)
{
    const struct creds_entry *store = creds_store(k->cf->creds);
    struct upsign_target t = {k->cf->upstream, store->access_key, store->secret,
                              k->cf->upstream_region};
    struct upstream_xfer_args xa;
    struct timeval tv;
    const char *errstr = NULL;
    const char **lines = upsign_lines(&k->pool, k->keys, &t, slice_cstr(method), path, "", sh, n,
                                      EMPTY_SHA256, &errstr);

    if (lines == NULL) {
        log_error("keep", "%s cannot sign %s %s for the store, " WHO_FMT ": %s", k->a.req_id,
                  method, path, WHO_ARGS(k), errstr);
        return -1;
    }
    k->status = 0;
    xa.method = method;
    xa.path_query = path;
    xa.headers = lines;
    xa.body_length = -1;
    k->x = upstream_start(k->up, &xa, &keep_ops, k);
    if (k->x == NULL) {
        return -1;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(k->timer, &tv);
    return 0;
}

/* ETags compared without their quotes (the index keeps what the store said). */
static int
same_etag(struct slice a, struct slice b)
{
    a = slice_trim(a);
    b = slice_trim(b);
    if (a.len >= 2 && a.ptr[0] == '"' && a.ptr[a.len - 1] == '"') {
        a = slice_make(a.ptr + 1, a.len - 2);
    }
    if (b.len >= 2 && b.ptr[0] == '"' && b.ptr[b.len - 1] == '"') {
        b = slice_make(b.ptr + 1, b.len - 2);
    }
    return a.len > 0 && slice_eq(a, b);
}

static void
start_copy(struct keep *k)
{
    const char *cb = k->cf->conflict_bucket;
    struct sigv4_header sh[6];
    char *dest, *src;
    int64_t timeout_ms;
    size_t n = 0;

    dest = pool_printf(&k->pool, "%.*s/%.*s/%s", SLICE_ARGS(k->a.bucket), SLICE_ARGS(k->a.key),
                       k->a.loser_stamp);
    if (strlen(dest) > KEEP_MAX_KEY_BYTES) {
        finish(k, KEEP_NOT_KEPT, NULL,
               pool_printf(&k->pool, "the conflict bucket's key <bucket>/<key>/<stamp> would be "
                                     "%zu bytes, over S3's %d",
                           strlen(dest), KEEP_MAX_KEY_BYTES));
        return;
    }
    if (k->length > KEEP_MAX_COPY_BYTES) {
        finish(k, KEEP_NOT_KEPT, NULL,
               pool_printf(&k->pool, "the loser is %lld bytes, over the 5 GiB a CopyObject "
                                     "copies (UploadPartCopy is not implemented)",
                           (long long)k->length));
        return;
    }
    /* bucket names are unreserved characters only (conf.c checks the conflict bucket's) */
    src = pool_printf(&k->pool, "/%.*s/%s", SLICE_ARGS(k->a.bucket),
                      uri_encode_pool(&k->pool, k->a.key, 1));
    sh[n++] = (struct sigv4_header){SLICE_LIT("x-amz-copy-source"), slice_cstr(src)};
    sh[n++] = (struct sigv4_header){SLICE_LIT("x-amz-copy-source-if-match"), k->etag};
    k->state = KS_COPY;
    timeout_ms = k->cf->upstream_first_byte_timeout_ms +
                 (k->length > 0 ? k->length / KEEP_COPY_BYTES_PER_S * 1000 : 0);
    if (send_store(k, "PUT",
                   pool_printf(&k->pool, "/%s/%s", cb,
                               uri_encode_pool(&k->pool, slice_cstr(dest), 1)),
                   sh, n, timeout_ms) != 0) {
        finish(k, KEEP_FAILED, NULL, "the copy request could not be started");
    }
}

static void
after_head(struct keep *k, const char *errstr)
{
    if (errstr != NULL || k->status == 0) {
        finish(k, KEEP_FAILED, NULL,
               pool_printf(&k->pool, "HEAD at the store: %s", errstr ? errstr : "no answer"));
        return;
    }
    if (k->status == 404) {
        finish(k, KEEP_NOT_KEPT, NULL, "the store does not hold the loser (404)");
        return;
    }
    if (k->status != 200) {
        finish(k, KEEP_FAILED, NULL,
               pool_printf(&k->pool, "HEAD at the store answered %d", k->status));
        return;
    }
    /* the loser is the object carrying its stamp (the index may not know its ETag: RGW
     * answers CompleteMultipartUpload with an empty one), or its ETag (an object the
     * store holds without our metadata, e.g. settled from an intent) */
    if (!slice_eq(k->stamp, slice_cstr(k->a.loser_stamp)) &&
        !same_etag(k->etag, slice_cstr(k->a.loser_etag))) {
        finish(k, KEEP_NOT_KEPT, NULL,
               pool_printf(&k->pool, "the store holds ETag %.*s stamp %.*s, not the loser "
                                     "(ETag %s)",
                           SLICE_ARGS(k->etag), SLICE_ARGS(k->stamp.ptr ? k->stamp : SLICE_LIT("-")),
                           k->a.loser_etag[0] ? k->a.loser_etag : "-"));
        return;
    }
    if (k->etag.len == 0) {
        finish(k, KEEP_FAILED, NULL, "HEAD at the store gave no ETag to pin the copy to");
        return;
    }
    /* "null" is an object written while versioning was off or suspended: a PUT in a
     * suspended bucket replaces it, so it is copied like an unversioned one */
    if (k->version_id.len > 0 && !slice_eq(k->version_id, SLICE_LIT("null"))) {
        finish(k, KEEP_VERSIONED,
               pool_printf(&k->pool, "version:%.*s", SLICE_ARGS(k->version_id)), NULL);
        return;
    }
    if (k->cf->conflict_bucket == NULL) {
        finish(k, KEEP_NOT_KEPT, NULL, "no conflict_bucket is configured and the bucket is "
                                       "not versioned");
        return;
    }
    start_copy(k);
}

static void
after_copy(struct keep *k, const char *errstr)
{
    size_t n = evbuffer_get_length(k->answer);
    const char *xml = n ? (const char *)evbuffer_pullup(k->answer, (ev_ssize_t)n) : "";
    const char *code = memmem(xml, n, "<Code>", 6), *end;
    struct slice c = SLICE_LIT("");

    if (code != NULL && (end = memmem(code + 6, n - (size_t)(code + 6 - xml), "<", 1)) != NULL) {
        c = slice_make(code + 6, (size_t)(end - code - 6));
    }
    if (errstr != NULL || k->status == 0) {
        finish(k, KEEP_FAILED, NULL,
               pool_printf(&k->pool, "CopyObject at the store: %s", errstr ? errstr : "no answer"));
        return;
    }
    if (k->status == 412) {
        finish(k, KEEP_NOT_KEPT, NULL, "the store's object changed before the copy (412)");
        return;
    }
    /* S3 may answer a copy 200 and report its failure in the body */
    if (k->status != 200 || memmem(xml, n, "<Error>", 7) != NULL) {
        finish(k, KEEP_FAILED, NULL,
               pool_printf(&k->pool, "CopyObject into the conflict bucket answered %d %.*s",
                           k->status, SLICE_ARGS(c)));
        return;
    }
    finish(k, KEEP_COPIED,
           pool_printf(&k->pool, "s3://%s/%.*s/%.*s/%s", k->cf->conflict_bucket,
                       SLICE_ARGS(k->a.bucket), SLICE_ARGS(k->a.key), k->a.loser_stamp),
           NULL);
}

static void
on_done(void *arg, const char *errstr)
{
    struct keep *k = arg;

    k->x = NULL;
    evtimer_del(k->timer);
    if (k->state == KS_HEAD) {
        after_head(k, errstr);
    } else {
        after_copy(k, errstr);
    }
}

struct keep *
keep_start(struct event_base *evb, struct upstream *up, struct sigv4_key_cache *keys,
           const struct proxy_conf *cf, const struct keep_args *a, keep_done_fn done, void *arg)
{
    struct keep *k = xcalloc(1, sizeof(*k));
    struct sigv4_header sh[3];

    pool_init(&k->pool);
    k->cf = cf;
    k->up = up;
    k->keys = keys;
    k->a.bucket = pool_slice_dup(&k->pool, a->bucket);
    k->a.key = pool_slice_dup(&k->pool, a->key);
    k->a.loser_stamp = pool_strndup(&k->pool, a->loser_stamp, strlen(a->loser_stamp));
    k->a.loser_etag = pool_strndup(&k->pool, a->loser_etag, strlen(a->loser_etag));
    k->a.winner_stamp = pool_strndup(&k->pool, a->winner_stamp, strlen(a->winner_stamp));
    k->a.winner_site = pool_strndup(&k->pool, a->winner_site, strlen(a->winner_site));
    k->a.req_id = pool_strndup(&k->pool, a->req_id, strlen(a->req_id));
    k->length = -1;
    k->version_id = SLICE_NULL;
    k->stamp = SLICE_NULL;
    k->answer = evbuffer_new();
    k->timer = evtimer_new(evb, on_timeout, k);
    k->done = done;
    k->arg = arg;
    k->state = KS_HEAD;
    if (send_store(k, "HEAD",
                   pool_printf(&k->pool, "/%.*s/%s", SLICE_ARGS(k->a.bucket),
                               uri_encode_pool(&k->pool, k->a.key, 1)),
                   sh, 0, cf->upstream_first_byte_timeout_ms) != 0) {
        keep_free(k);
        return NULL;
    }
    return k;
}
