/*
 * worker.h - the replicator's consumer loop: one consumer group per peer on the site's
 * s3tee:log stream, entries applied at the peers (apply.h), acknowledged, retried with
 * backoff, dead-lettered when they keep failing; the stream trimmed below what every
 * group has acknowledged; a metrics snapshot. One worker per process, on one event loop.
 */
#ifndef S3TEE_REPLICATOR_WORKER_H
#define S3TEE_REPLICATOR_WORKER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct repl_conf;
struct sites;
struct worker;

typedef void (*worker_stopped_cb)(void *arg);

/* CF must outlive the worker. Nothing runs before worker_start(). */
struct worker *worker_create(struct event_base *evb, const struct repl_conf *cf);
/* Connects to Redis, creates the groups and starts consuming. */
void worker_start(struct worker *w);
/*
 * worker_stop - stop reading; entries not yet started stay pending in Redis (our consumer's
 * PEL, claimed by another replicator after claim_idle or resumed by a restart with the same
 * consumer name). Transfers in flight get GRACE_MS to finish and be acknowledged, then are
 * cancelled. CB is called once (from the loop) when nothing is in flight any more.
 */
void worker_stop(struct worker *w, int64_t grace_ms, worker_stopped_cb cb, void *arg);
/* Frees W; transfers still running are cancelled without acknowledging. */
void worker_destroy(struct worker *w);
/* W's endpoints (owned by W), for a credentials reload with sites_rekey(). */
struct sites *worker_sites(struct worker *w);
/* After repl_conf_reload_creds(): every site and the repairer take the new keys. */
void worker_rekey(struct worker *w);

/*
 * worker_backoff_ms - "full jitter" backoff for the ATTEMPT-th failure (1-based): a delay
 * in [0, min(MAX_MS, BASE_MS * 2^(ATTEMPT-1))], picked by RND. Pure, for tests.
 */
int64_t worker_backoff_ms(int64_t base_ms, int64_t max_ms, int attempt, uint64_t rnd);

/* A stream entry id "ms-seq". */
struct stream_id {
    uint64_t ms;  /* milliseconds part */
    uint64_t seq; /* sequence part */
};
#define STREAM_ID_TEXT_MAX 48 /* "18446744073709551615-18446744073709551615" + NUL */

/* "1700000000000-3" (or "1700000000000", seq 0) -> id; 0 or -1. */
int stream_id_parse(const char *s, size_t len, struct stream_id *out);
/* Writes "ms-seq" into OUT (STREAM_ID_TEXT_MAX). */
void stream_id_format(struct stream_id id, char *out);
/* <0, 0, >0. */
int stream_id_cmp(struct stream_id a, struct stream_id b);
/* The smallest id greater than ID. */
struct stream_id stream_id_next(struct stream_id id);

#endif
