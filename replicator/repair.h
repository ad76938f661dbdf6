/*
 * repair.h - keys whose store copy may have fallen behind the index. A write that lost its
 * key's lease after the store took its last byte (a store that stalled longer than the
 * lease margin) may land in the store after a newer write that took the lease meanwhile:
 * the store then shows the older stamp while the index (and the peers) have the newer
 * one. The commit scripts put such keys in s3tee:repair (queue.h QUEUE_KEY_REPAIR).
 *
 * Every so often the replicator reads the keys that are due and, for each, compares the
 * index with a HEAD at the local store. Consistent (the store has the index's stamp, or a
 * newer write is on its way): forgotten. Behind: an ERROR "ALARM", then the index's winner
 * is pulled from the first peer whose store holds that exact stamp, as a repair replica
 * write through this site's proxy (resync_proxy; x-s3tee-repair lets it rewrite the
 * index's own stamp); a tombstone is re-applied the same way. Nobody has it yet: tried again
 * with backoff; after max_attempts it goes to the dead-letter stream with the reason.
 * One key at a time, on the worker's loop and Redis connection.
 */
#ifndef S3TEE_REPLICATOR_REPAIR_H
#define S3TEE_REPLICATOR_REPAIR_H

#include <stdint.h>

struct event_base;
struct queue;
struct repl_conf;
struct sites;
struct repair;

/* Q, SITES and CF must outlive the repairer; nothing runs before repair_start(). */
struct repair *repair_create(struct event_base *evb, struct queue *q, struct sites *sites,
                             const struct repl_conf *cf, int64_t interval_ms);
/* First round now, then one every interval. */
void repair_start(struct repair *r);
/* After a credentials reload: the key used at this site's proxy is looked up again. */
void repair_rekey(struct repair *r);
/* No more rounds; a transfer in flight is cancelled (the key stays in the set). */
void repair_stop(struct repair *r);
/* After repair_stop() and after Q is destroyed. */
void repair_destroy(struct repair *r);

#endif
