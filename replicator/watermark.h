/*
 * watermark.h - notices a Redis that lost acknowledged writes.
 *
 * Redis keeps the site's queue with AOF and appendfsync always, but it can still come back
 * with less than it acknowledged: restored from an old backup, started on an empty
 * directory, or from an AOF cut short on a broken disk. The writes it forgot are in the
 * store (with their stamps) but in no queue, so no peer would ever get them. DESIGN.md:
 * "A Redis generation number, also kept in the store, detects a Redis that lost its data
 * and triggers a resync that trusts the stamps in the store."
 *
 * The number used is the stream's `entries-added` (XINFO STREAM, Redis 7): it only ever
 * grows, trimming does not lower it, and it counts every write the site acknowledged.
 * Each round:
 *
 *   XINFO STREAM s3tee:log --> GET <meta_bucket>/<site>/redis-watermark.json at the store
 *        |                          (404: none yet; NoSuchBucket: the bucket is created)
 *        v
 *   stored > Redis's: LOST --> every peer marked s3tee:rebuild:<peer> (resync from the
 *        |                    last write Redis still has), ALARM logged, then the store's
 *        |                    copy is set to Redis's figure, so the alarm fires once
 *        v
 *   otherwise: PUT the current figure when it moved
 *
 * Several replicators of one site may run this at once: every copy they write is a figure
 * Redis had at some moment, so the stored figure never exceeds Redis's unless Redis lost
 * writes. The window: writes acknowledged after the last round (at most one interval) and
 * then lost are not noticed by this check.
 */
#ifndef S3TEE_REPLICATOR_WATERMARK_H
#define S3TEE_REPLICATOR_WATERMARK_H

#include <stdint.h>

struct event_base;
struct queue;
struct repl_conf;
struct site;
struct watermark;

/* Q, STORE and CF must outlive it; nothing runs before watermark_start(). */
struct watermark *watermark_create(struct event_base *evb, struct queue *q, struct site *store,
                                   const struct repl_conf *cf);
/* First round now, then one every cf->trim_interval_ms. */
void watermark_start(struct watermark *wm);
/* No more rounds; a store request in flight is cancelled. */
void watermark_stop(struct watermark *wm);
/* After watermark_stop() and after Q is destroyed. */
void watermark_destroy(struct watermark *wm);

#endif
