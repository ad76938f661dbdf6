/*
 * resched.h - anti-entropy on a schedule and on demand: runs `s3tee resync` (tools/resync.c)
 * with one peer for each configured bucket, one child process at a time.
 *
 * Triggers: every resync_interval per peer (0 = never), and at once for a peer marked for
 * rebuild (the Redis key s3tee:rebuild:<peer> exists; removed once every bucket's run
 * exited 0; a failed rebuild is retried after RESCHED_RETRY_MS). Running resync in a child
 * keeps the replicator's loop free of its synchronous work, and a crash of one run costs
 * nothing but that run (it resumes from its checkpoint next time).
 */
#ifndef S3TEE_REPLICATOR_RESCHED_H
#define S3TEE_REPLICATOR_RESCHED_H

struct event_base;
struct repl_conf;
struct resched;

/* NULL when there is nothing to schedule (no resync_bucket). CF must outlive it. */
struct resched *resched_create(struct event_base *evb, const struct repl_conf *cf);
/* Stops a running child (SIGTERM, then waits for it) and frees. NULL is a no-op. */
void resched_destroy(struct resched *r);

#endif
