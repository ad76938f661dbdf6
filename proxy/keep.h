/*
 * keep - a replica write is about to overwrite a concurrent write made at this site, which
 * it beat (a conflict: version vectors incomparable, the incoming stamp higher). Before
 * the store is asked, keep the loser's bytes where they can be kept
 * (notes/replication.md, "Where losers are kept"):
 *
 *   HEAD bucket/key at the store
 *     |-- x-amz-version-id (not "null"): a versioned bucket keeps the loser as a
 *     |   non-current version --------------------------------------> KEEP_VERSIONED
 *     |-- 404, neither the loser's stamp (x-amz-meta-s3tee-stamp) nor its ETag, over
 *     |   5 GiB, a destination key over 1024 bytes, or no conflict_bucket -> KEEP_NOT_KEPT
 *     |-- any other status, no answer in time ---------------------------> KEEP_FAILED
 *     +-- CopyObject to <conflict_bucket>/<bucket>/<key>/<loser stamp> with
 *         x-amz-copy-source-if-match: <the HEAD's ETag> (exactly what was checked)
 *           |-- 200 without an <Error> body ------------------------------> KEEP_COPIED
 *           |-- 412: the store holds another object than the loser -------> KEEP_NOT_KEPT
 *           +-- anything else (no conflict bucket, store error), no answer
 *               in time ---------------------------------------------------> KEEP_FAILED
 *
 * KEEP_FAILED means the replica write must not go ahead now: the caller answers 503, the
 * peer's replicator retries the entry later, and nothing is lost. KEEP_NOT_KEPT means
 * waiting would not help (the bytes are not there, or cannot be copied by CopyObject): the
 * write goes ahead and the conflict record says the loser was not kept. Every outcome but
 * KEEP_COPIED and KEEP_VERSIONED is logged here as an ERROR naming the bucket, key, sites
 * and conflict bucket (a WARN when no conflict bucket is configured: the operator's choice).
 *
 * Requests are signed with the store key (upsign) and sent on the worker's store
 * connections. Everything in the arguments is copied; the conf and the key cache must
 * outlive the operation (the caller's request holds both).
 */
#ifndef S3TEE_PROXY_KEEP_H
#define S3TEE_PROXY_KEEP_H

#include <stdint.h>

#include "common/slice.h"
#include "proxy/conf.h"
#include "signing/sigv4.h"

struct event_base;
struct upstream;
struct keep;

enum keep_outcome {
    KEEP_COPIED = 0,  /* a copy is in the conflict bucket */
    KEEP_VERSIONED,   /* the store keeps the loser as a non-current version */
    KEEP_NOT_KEPT,    /* nothing to keep, or it cannot be kept: go ahead, say so */
    KEEP_FAILED,      /* could not keep it now: refuse the replica write (503), retried */
};

struct keep_result {
    enum keep_outcome outcome; /* see above */
    const char *kept_at;       /* "s3://<cb>/<bucket>/<key>/<stamp>", "version:<id>", or "" */
    const char *why;           /* KEEP_NOT_KEPT / KEEP_FAILED: the reason, else "" */
};

/* Called exactly once unless keep_cancel() came first; RES and its strings are valid
 * during the call only. The keep is gone when it returns. */
typedef void (*keep_done_fn)(void *arg, const struct keep_result *res);

struct keep_args {
    struct slice bucket, key;   /* the object the replica write will overwrite */
    const char *loser_stamp;    /* its stamp (written at this site) */
    const char *loser_etag;     /* its ETag from the index, quotes included ("" unknown) */
    const char *winner_stamp;   /* the replica write's stamp (logs) */
    const char *winner_site;    /* the site that sent it (logs) */
    const char *req_id;         /* request id (logs) */
};

/*
 * Starts keeping A's loser at the store of CF (CF->conflict_bucket may be NULL: then only
 * a versioned bucket keeps it). Returns NULL when the first request cannot be built or
 * started (logged); DONE is then never called.
 */
struct keep *keep_start(struct event_base *evb, struct upstream *up, struct sigv4_key_cache *keys,
                        const struct proxy_conf *cf, const struct keep_args *a, keep_done_fn done,
                        void *arg);
/* Stops K: its store request is aborted, DONE is not called, K is freed. */
void keep_cancel(struct keep *k);

/* Largest object CopyObject copies in one request (S3's limit; bigger needs UploadPartCopy). */
#define KEEP_MAX_COPY_BYTES (5LL * 1024 * 1024 * 1024)
/* Longest S3 object key. */
#define KEEP_MAX_KEY_BYTES 1024

#endif
