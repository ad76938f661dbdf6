/*
 * rebuild.h - marking a peer "resync from T" (DESIGN.md, "Durability of the queue").
 *
 * A peer is marked when its queue can no longer be trusted to carry what it missed: its
 * backlog passed a cap (worker.c drops it so Redis stays bounded), or this site's Redis lost
 * acknowledged writes (watermark.c). The mark is the Redis key s3tee:rebuild:<peer>, a JSON
 * object {"since_ms", "marked_ms", "reason", "marked_by"}; `s3tee resync` repairs the peer
 * by comparing listings and stamps. Marking also restarts the peer's consumer group at the
 * stream's end when asked to, in the same script, so a peer is never skipped unmarked.
 */
#ifndef S3TEE_REPLICATOR_REBUILD_H
#define S3TEE_REPLICATOR_REBUILD_H

#include <stdint.h>

#include "queue/queue.h"

/* What rebuild_mark reports: the mark's since_ms (an older mark keeps its older time). */
typedef void (*rebuild_cb)(void *arg, const char *errstr, int64_t since_ms);

/*
 * Marks PEER (a site id) at this site (SITE) for resync from SINCE_MS because of REASON
 * (copied). DROP_QUEUE: also destroy the group "peer:<PEER>" and create it again at the
 * stream's end. CB (may be NULL) runs once. Returns -1 when the command cannot be sent
 * (CB is then not called).
 */
int rebuild_mark(struct queue *q, const char *peer, const char *site, int64_t since_ms,
                 const char *reason, int drop_queue, rebuild_cb cb, void *arg);

#endif
