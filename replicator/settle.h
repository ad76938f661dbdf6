/*
 * settle.h - intents a proxy left behind. A proxy records an intent before it forwards a
 * write and removes it when it commits; one that dies in between leaves it. Every so often
 * the replicator reads the intents whose time has come, HEADs each object at the local
 * store and runs queue_settle_intent(): a write that landed is indexed and logged (and so
 * replicated), one that did not is forgotten. Intents of keys whose lease is held are left
 * for a later round. One intent at a time, on the worker's loop and Redis connection.
 */
#ifndef S3TEE_REPLICATOR_SETTLE_H
#define S3TEE_REPLICATOR_SETTLE_H

#include <stdint.h>

struct event_base;
struct queue;
struct site;
struct settle;

/* Q and STORE must outlive the settler; nothing runs before settle_start(). */
struct settle *settle_create(struct event_base *evb, struct queue *q, struct site *store,
                             int64_t interval_ms);
/* First round now, then one every interval. */
void settle_start(struct settle *s);
/* No more rounds; a HEAD in flight is cancelled (the intent stays for later). */
void settle_stop(struct settle *s);
/* After settle_stop() and after Q is destroyed (its callbacks find a stopped settler). */
void settle_destroy(struct settle *s);

#endif
