/*
 * gc.h - drops tombstones once they are causally stable (DESIGN.md, "Deletes and
 * tombstones"; notes/replication.md, "Dropping tombstones").
 *
 * A tombstone T of a key may go when no site can still send an older write of that key and
 * every site already holds T (or something newer): then nothing it guards against can
 * arrive, and resync finds the key absent everywhere. Each site works out its low-water
 * figure LW, in ms: every write that site originated with a stamp below LW has been
 * delivered to every peer (acknowledged by each peer's group), and none it may still send
 * has a stamp below LW. The figure is the least of
 *
 *   the site's HLC (moved up to the replicator's clock: later writes mint above it),
 *   s3tee:open      local writes between begin and commit (their stamps are not logged yet),
 *   s3tee:mpus      open multipart uploads (Complete logs the stamp taken at Create),
 *   s3tee:log       every entry some peer's group has not acknowledged (pending or not yet
 *                   delivered), scanned up to gc_scan_limit entries (beyond: LW 0),
 *   s3tee:dead      dead letters, which an operator may replay,
 *   and 0 while a peer is marked for rebuild or has no group yet.
 *
 * Each round:
 *
 *   GC_LW     one script computes LW, stores it in s3tee:lw (this site's field) and returns
 *      |      the horizon H = min(LW, every peer's last published LW; 0 for a peer never heard)
 *      v
 *   GC_RUN    GET / at every peer's proxy with x-s3tee-low-water: LW (the proxy there keeps
 *      |      it in its s3tee:lw), not waited for: a partitioned peer's may hang until
 *      |      transfer_timeout, and a peer whose last one still hangs is skipped;
 *      |      meanwhile SCAN s3tee:o:* in batches; a script DELs each tombstone whose stamps
 *      |      (data and tags) are below min(H, now - tombstone_keep) and whose key has no
 *      v      lease and no pending repair
 *   GC_IDLE   when the sweep ended
 *
 * Every figure is a lower bound when it is read, and stays one: stale figures only keep
 * tombstones longer. Several replicators of one site may run rounds at once.
 */
#ifndef S3TEE_REPLICATOR_GC_H
#define S3TEE_REPLICATOR_GC_H

#include <stdint.h>

struct event_base;
struct queue;
struct repl_conf;
struct sites;

struct gc_stats {
    int64_t low_water_ms;  /* this site's LW at the last round (-1 none yet) */
    int64_t horizon_ms;    /* the horizon the last sweep used (-1 none yet) */
    int64_t dropped;       /* tombstones dropped since start */
    int64_t rounds;        /* rounds completed */
};

/* Q, SITES and CF must outlive it; nothing runs before gc_start(). */
struct gc *gc_create(struct event_base *evb, struct queue *q, struct sites *sites,
                     const struct repl_conf *cf);
/* First round now, then one every cf->gc_interval_ms (0: never). */
void gc_start(struct gc *g);
/* No more rounds; requests in flight are cancelled. */
void gc_stop(struct gc *g);
/* After gc_stop() and after Q is destroyed. NULL is a no-op. */
void gc_destroy(struct gc *g);
const struct gc_stats *gc_stats(const struct gc *g);

#endif
