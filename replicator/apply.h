/*
 * apply.h - apply one stream entry (a mutation) at one peer site: read what the entry
 * describes from the local store, send it to the peer's s3tee proxy as a replica write
 * (notes/replication.md, "Replica writes on the wire"). One struct apply per transfer, a
 * state machine of at most two concurrent HTTP transfers (store -> peer), bodies streamed
 * through a bounded buffer, never held whole.
 *
 * The planning and request-building functions below are pure (no I/O), for unit tests.
 */
#ifndef S3TEE_REPLICATOR_APPLY_H
#define S3TEE_REPLICATOR_APPLY_H

#include <stddef.h>
#include <stdint.h>

#include "common/pool.h"
#include "common/slice.h"
#include "queue/mutation.h"
#include "replicator/sites.h"

struct event_base;
struct apply;

/* How one apply ended. */
enum apply_outcome {
    APPLY_APPLIED = 0, /* the peer applied the entry */
    APPLY_STALE,       /* the peer already had this stamp or a newer one */
    APPLY_SUPERSEDED,  /* the local store no longer holds this stamp: a later entry carries it */
    APPLY_FUTURE,      /* the peer refused the stamp as too far ahead of its clock: retry */
    APPLY_FAILED,      /* transient or unexplained failure: retry, dead-letter after max_attempts */
    APPLY_UNAVAILABLE, /* the peer or the local store is unreachable or answers 502/503/504:
                        * retry for as long as it takes, never dead-lettered (a site that is
                        * down keeps its backlog; resync covers outages past the backlog cap) */
    APPLY_INVALID,     /* the entry itself cannot be applied (malformed): dead-letter now */
    APPLY_CANCELLED,   /* apply_cancel() */
};

const char *apply_outcome_name(enum apply_outcome o); /* "applied", "stale", ... */

struct apply_result {
    enum apply_outcome outcome; /* see above */
    int status;                 /* HTTP status behind the outcome, 0 if none */
    const char *reason;         /* why (failures), "" otherwise; valid during the callback */
    int64_t skew_ms;            /* APPLY_FUTURE: stamp minus the peer's Date header */
    int skew_known;             /* skew_ms is set (the peer sent a Date header) */
    const char *peer_etag;      /* applied puts: the ETag the peer answered ("" if none) */
};

/* Called exactly once per apply_start(); the apply is freed when it returns. */
typedef void (*apply_cb)(void *arg, const struct apply_result *res);

/* What every apply shares (borrowed; must outlive every apply). */
struct apply_ctx {
    struct event_base *evb;      /* the loop */
    struct site *store;          /* the local store */
    int64_t transfer_timeout_ms; /* no progress for this long fails the apply */
    int repair;                  /* the writes are repairs (x-s3tee-repair: the receiving
                                  * proxy rewrites its index's own stamp; repair.h) */
};

/*
 * apply_start - apply M at PEER. M (and the memory its slices point to) must stay valid
 * until CB has been called. Never fails synchronously: an entry that cannot be applied is
 * reported through CB (APPLY_INVALID) from the event loop, never from inside this call.
 */
struct apply *apply_start(const struct apply_ctx *ctx, struct site *peer, const struct mutation *m,
                          apply_cb cb, void *arg);
/* Stops A: its transfers are dropped and CB comes (later, once) with APPLY_CANCELLED. A
 * multipart upload begun at the peer is left for the peer store's lifecycle to remove. */
void apply_cancel(struct apply *a);

/* --- planning (pure) ----------------------------------------------------------------- */

enum apply_kind {
    APPLY_KIND_PUT = 0,     /* GET store -> PUT peer */
    APPLY_KIND_MULTIPART,   /* HEAD store, Create, (GET range -> UploadPart) per part, Complete */
    APPLY_KIND_DELETE,      /* DELETE peer */
    APPLY_KIND_PUT_TAGS,    /* PUT ?tagging with Tagging XML (an empty set too: RGW 16.2's
                             * DELETE ?tagging blanks the object's ETag in bucket listings) */
};

struct apply_plan {
    enum apply_kind kind; /* what requests the entry turns into */
    size_t nparts;        /* multipart: number of parts */
    int64_t *part_size;   /* multipart: bytes per part (pool) */
    int64_t total;        /* multipart: sum of part sizes */
    char *tagging_xml;    /* PUT_TAGS: the request body (pool) */
};

/*
 * apply_plan_make - what M turns into. Returns 0, or -1 with *WHY (static text) when the
 * entry is malformed: a field that would break a header (CR, LF, NUL), a stamp that does
 * not parse, a bad parts list, tags that do not decode.
 */
int apply_plan_make(struct pool *p, const struct mutation *m, struct apply_plan *out,
                    const char **why);

/* "k1=v1&k2=v2" (URL-encoded) -> <Tagging><TagSet><Tag>... with XML escaping; NULL when a
 * key or value does not decode or holds a character XML 1.0 cannot carry. */
char *apply_tagging_xml(struct pool *p, struct slice tags);
/* CompleteMultipartUpload body for parts 1..N with these ETags (quotes included). */
char *apply_complete_xml(struct pool *p, char *const *etags, size_t n);

/* The store request: METHOD "GET" or "HEAD"; LEN > 0 adds Range bytes=OFF-(OFF+LEN-1). */
void apply_store_request(struct pool *p, const struct mutation *m, const char *method, int64_t off,
                         int64_t len, struct sites_request *out);

enum apply_step {
    APPLY_STEP_PUT = 0,     /* PUT /b/k, body streamed from the store */
    APPLY_STEP_CREATE,      /* POST /b/k?uploads */
    APPLY_STEP_PART,        /* PUT /b/k?partNumber=N&uploadId=U, body streamed */
    APPLY_STEP_COMPLETE,    /* POST /b/k?uploadId=U with the part list */
    APPLY_STEP_ABORT,       /* DELETE /b/k?uploadId=U */
    APPLY_STEP_DELETE,      /* DELETE /b/k */
    APPLY_STEP_PUT_TAGS,    /* PUT /b/k?tagging */
};

/* Inputs of a peer request besides the entry. */
struct apply_peer_args {
    int part;                        /* PART: 1-based part number */
    const char *upload_id;           /* PART, COMPLETE, ABORT: the peer's upload id */
    const struct sigv4_header *meta; /* PUT, CREATE: object headers read from the store */
    size_t nmeta;                    /* entries in meta */
    struct slice body;               /* COMPLETE, PUT_TAGS: the in-memory body */
    int repair;                      /* add x-s3tee-repair: 1 */
};

/*
 * apply_peer_request - the request for STEP at a peer: method, encoded path and query,
 * the x-s3tee-* headers, the object headers (PUT, CREATE), x-amz-tagging (PUT, CREATE),
 * Content-MD5 and the payload hash of an in-memory body; UNSIGNED-PAYLOAD otherwise.
 */
void apply_peer_request(struct pool *p, const struct mutation *m, enum apply_step step,
                        const struct apply_peer_args *args, struct sites_request *out);

/* 1 if NAME (lowercase) is an object header copied from the store to the peer. */
int apply_copied_header(struct slice name);

#endif
