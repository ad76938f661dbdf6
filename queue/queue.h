/*
 * queue.h - the site's Redis: stamps, per-key leases, the index, intents, the mutation
 * stream and the conflict log. One struct queue per event loop (proxy worker, replicator),
 * over hiredis async on libevent with our own per-command timers (hiredis 0.14 has none).
 *
 * Every call completes exactly once through its callback: with errstr NULL, or with one
 * of the queue_err_* sentinels (compare by address) - also on timeout, disconnect and
 * queue_destroy(). Input strings are copied before the call returns. Result structs passed
 * to callbacks are valid only during the callback.
 *
 * The scripts and keys are described in notes/replication.md.
 *
 * Return values (all calls below): 0, and then CB (which may be NULL) is called exactly once,
 * never before the call returns - a call made while Redis is not connected completes with
 * queue_err_unavailable on the next loop turn. -1 only for invalid arguments (NULL queue,
 * empty bucket or key, no holder, malformed stamp, a mutation naming another object) or a
 * queue being destroyed: CB is then never called.
 *
 * Intents: the member of s3tee:intents is the JSON object
 *   {"site":"<this site>","holder":"<holder>","op":"put|delete|tags","bucket":"<bucket>",
 *    "key":"<key, S3 URI-encoded with '/' kept (uri_decode_pool() reverses it)>"}
 * built from the queue_write, so begin, commit and release must get the same holder, op,
 * bucket and key. Its score is now_ms + intent_ttl_ms of the begin.
 */
#ifndef S3TEE_QUEUE_QUEUE_H
#define S3TEE_QUEUE_QUEUE_H

#include <stdint.h>

#include "common/slice.h"
#include "queue/mutation.h"
#include "queue/stamp.h"

struct event_base;
struct queue;

extern const char queue_err_unavailable[]; /* not connected / connection lost */
extern const char queue_err_timeout[];     /* command timed out (connection is dropped) */
extern const char queue_err_shutdown[];    /* queue_destroy() with the command pending */
extern const char queue_err_reply[];       /* Redis answered with an error or a bad reply */

struct queue_opts {
    const char *host;                /* redis host ("127.0.0.1"), copied */
    int port;                        /* redis port */
    const char *site_id;             /* this site, copied */
    int64_t command_timeout_ms;      /* per command */
    int64_t reconnect_ms;            /* delay between reconnect attempts */
};

struct queue *queue_create(struct event_base *evb, const struct queue_opts *o);
/* Fails every pending command with queue_err_shutdown, then frees. */
void queue_destroy(struct queue *q);
/* 1 while connected. */
int queue_connected(const struct queue *q);

/* The index entry of a key as it was before the write. */
struct queue_entry {
    int exists;                      /* the index knows the key */
    int deleted;                     /* it is a tombstone */
    char stamp[STAMP_TEXT_MAX];      /* data stamp ("" if none) */
    char vv[VV_TEXT_MAX];            /* data vector */
    char etag[80];                   /* ETag as the store gave it, quotes included */
    int64_t size;                    /* object size, -1 unknown */
    char tag_stamp[STAMP_TEXT_MAX];  /* tag register stamp ("" if none) */
    struct slice tags;               /* tag register value (URL-encoded); callback only */
};

/* What a write is about. */
struct queue_write {
    struct slice bucket;             /* bucket name */
    struct slice key;                /* object key (any bytes) */
    const char *holder;              /* lease holder token (request id) */
    int64_t now_ms;                  /* the proxy's wall clock */
    int64_t lease_ms;                /* lease length; renew before it runs out */
    enum mutation_op op;             /* what kind of mutation */
    int64_t intent_ttl_ms;           /* local writes: settle the intent after this */
    int repair;                      /* replica: a repair, which may rewrite the index's own
                                      * stamp into the store (replicator/repair.h) */
};

enum queue_verdict {
    QUEUE_GO = 0,                    /* lease taken: go ahead */
    QUEUE_BUSY,                      /* lease held by another writer: retry later */
    QUEUE_STALE,                     /* replica: the index already has this stamp or newer */
    QUEUE_FUTURE,                    /* replica: stamp beyond max_clock_offset; refuse */
};

struct queue_begin_result {
    enum queue_verdict verdict;      /* see above */
    char stamp[STAMP_TEXT_MAX];      /* local: the new stamp; replica: the incoming one */
    char vv[VV_TEXT_MAX];            /* local: the new vector (current + 1 here) */
    struct queue_entry cur;          /* index entry before this write */
};

typedef void (*queue_begin_cb)(void *arg, const char *errstr, const struct queue_begin_result *res);
typedef void (*queue_done_cb)(void *arg, const char *errstr);
/* RESULT: 1 when the lease is held with at least the margin left, 0 when lost. */
typedef void (*queue_check_cb)(void *arg, const char *errstr, int held);

/*
 * queue_begin_local - a client write at this site: mint a stamp, take the lease, read the
 * index entry, compute the new vector, record the intent (all one script).
 */
int queue_begin_local(struct queue *q, const struct queue_write *w, queue_begin_cb cb, void *arg);
/*
 * queue_begin_replica - a peer's write: refuse stamps more than MAX_OFFSET_MS ahead of
 * W->now_ms (QUEUE_FUTURE, nothing changed), advance the HLC past STAMP, then compare with
 * the index (QUEUE_STALE when not newer; for MUT_TAGS the tag stamp is compared), then take
 * the lease (QUEUE_BUSY).
 */
int queue_begin_replica(struct queue *q, const struct queue_write *w, struct slice stamp,
                        int64_t max_offset_ms, queue_begin_cb cb, void *arg);
/* Extends the lease if HOLDER still holds it (callback: held or not). */
int queue_renew_lease(struct queue *q, const struct queue_write *w, queue_check_cb cb, void *arg);
/* The fence check before the last body byte: held with at least MARGIN_MS left. */
int queue_check_lease(struct queue *q, const struct queue_write *w, int64_t margin_ms,
                      queue_check_cb cb, void *arg);
/*
 * queue_commit_local - after the store accepted a client write: update the index from M,
 * XADD M to s3tee:log, drop the intent, release the lease. One script.
 */
int queue_commit_local(struct queue *q, const struct queue_write *w, const struct mutation *m,
                       queue_done_cb cb, void *arg);
/* After the store accepted a replica write: update the index if M is still newer, release
 * the lease. Never XADDs (no loops). */
int queue_commit_replica(struct queue *q, const struct queue_write *w, const struct mutation *m,
                         queue_done_cb cb, void *arg);
/* The write did not happen (store error, abort): release the lease and drop the intent. */
int queue_release(struct queue *q, const struct queue_write *w, queue_done_cb cb, void *arg);

/*
 * Keys whose store copy may hold an older stamp than the index (a write that lost its
 * lease after the store took it): a sorted set of "<bucket>/<key>", score = when to look
 * (0: now). The commit scripts add to it; replicator/repair.c checks and repairs.
 */
#define QUEUE_KEY_REPAIR "s3tee:repair"

/*
 * The tombstone horizon's inputs (replicator/gc.h): local writes between begin and
 * commit/release (the intent member, score = the begin's now_ms, a floor for its stamp),
 * multipart uploads between Create and Complete/Abort (member = upload id, score = the ms of
 * the stamp the Create took), and the low-water figure each site published (hash: site id
 * -> "<ms> <time published ms>").
 */
#define QUEUE_KEY_OPEN "s3tee:open"
#define QUEUE_KEY_MPUS "s3tee:mpus"
#define QUEUE_KEY_LW "s3tee:lw"

/* A conflict record (notes/replication.md): XADD to s3tee:conflicts. */
struct queue_conflict {
    struct slice bucket, key;        /* where */
    struct slice winner_stamp;       /* stamp that won */
    struct slice loser_stamp;        /* stamp that lost (its origin is this site) */
    struct slice winner_etag, loser_etag;
    int64_t loser_size;              /* bytes of the losing version, -1 unknown */
    struct slice kept_at;            /* where the loser's bytes are kept ("" = nowhere) */
};
int queue_log_conflict(struct queue *q, const struct queue_conflict *c, queue_done_cb cb, void *arg);

/*
 * Raw access for the replicator and tools: a command built like redisAsyncCommandArgv,
 * completed with the hiredis reply (valid during the callback only; NULL on error).
 * A Redis error reply comes with errstr == queue_err_reply and REPLY set (the error text).
 */
struct redisReply;
typedef void (*queue_raw_cb)(void *arg, const char *errstr, struct redisReply *reply);
int queue_command_argv(struct queue *q, int argc, const char **argv, const size_t *argvlen,
                       queue_raw_cb cb, void *arg);
/*
 * The same with its own timeout (0 = command_timeout_ms): for blocking commands such as
 * XREADGROUP ... BLOCK n, give more than n. A blocking command stalls every command behind
 * it on the connection, so run those on a queue of their own.
 */
int queue_command_argv_timeout(struct queue *q, int64_t timeout_ms, int argc, const char **argv,
                               const size_t *argvlen, queue_raw_cb cb, void *arg);

/*
 * queue_settle_intent - a replicator settles an intent left behind by a proxy (the
 * settle_intent script, notes/replication.md): ZREM, and for a write that landed at the
 * store but never reached the log, update the index and XADD the mutation. Idempotent.
 */
enum queue_settle_outcome {
    QUEUE_SETTLE_GONE = 0,           /* the intent was not there any more (settled already) */
    QUEUE_SETTLE_BUSY,               /* the key's lease is held: nothing changed, try later */
    QUEUE_SETTLE_DROPPED,            /* intent removed, nothing logged */
    QUEUE_SETTLE_LOGGED,             /* index updated, mutation XADDed, intent removed */
};

struct queue_settle {
    struct slice member;             /* the intent, byte for byte as in s3tee:intents */
    enum mutation_op op;             /* its op */
    struct slice bucket, key;        /* its bucket and (decoded) key */
    int64_t now_ms;                  /* wall clock (a delete's stamp) */
    struct slice expect_stamp;       /* delete: the index's st read before the store was
                                      * asked ("" none); any other st means a write landed */
    int found;                       /* the store has the object */
    struct slice stamp, vv;          /* put, found: its x-amz-meta-s3tee-stamp and -vv */
    struct slice etag;               /* put, found: its ETag */
    int64_t size;                    /* put, found: its size */
    struct slice tags;               /* put, found: its tag set at the store, URL-encoded */
};

typedef void (*queue_settle_cb)(void *arg, const char *errstr, enum queue_settle_outcome out);
/* -1 also for a found put whose stamp or vector is malformed. */
int queue_settle_intent(struct queue *q, const struct queue_settle *s, queue_settle_cb cb,
                        void *arg);

#endif
