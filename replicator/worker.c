/*
 * worker.c - consume s3tee:log: one consumer group per peer, entries applied at the peers,
 * acknowledged, retried, dead-lettered; the stream trimmed; metrics written.
 *
 * Per peer (group "peer:<site>", our consumer name cf->consumer), reads on a Redis
 * connection of its own (a blocking XREADGROUP stalls every command behind it):
 *
 *   GROUP --XGROUP CREATE (BUSYGROUP is fine)--> BACKLOG --empty answer--> LIVE
 *     ^     XREADGROUP ... STREAMS s3tee:log <cursor>:       XREADGROUP ... BLOCK block_ms
 *     |     our own pending entries, from 0                   ... STREAMS s3tee:log >
 *     +---------------- any read error, after REDIS_RETRY_MS ----------+
 *
 *   A peer reads while fewer than batch entries wait ready and it holds fewer than batch +
 *   concurrency entries; a peer that keeps failing stops reading once its entries wait in
 *   backoff, and its backlog stays in Redis. Entries of one key start in stream order (a
 *   tagging or delete never overtakes its PUT at a peer).
 *   Every claim_idle/2 (and at start): XCLAIM ... JUSTID of the entries we hold (resets
 *   their idle time, so no other replicator takes them while they wait in backoff), then
 *   XAUTOCLAIM ... claim_idle: entries of dead consumers become ours.
 *
 * Per entry (one stream entry for one peer):
 *
 *   read/claimed -> READY --a slot is free (round-robin over peers)--> APPLYING
 *                     ^                                                  |
 *                     |  applied / stale / superseded -------------------+-> ACKING --XACK--> freed
 *                     |  future: retried, never dead-lettered -----------+     ^ |
 *                  BACKOFF <-- failed, failures < max_attempts ----------+     | +-err-> REDIS_WAIT
 *                  (full jitter)                                         |     |    (1 s, again)
 *                        failed, failures == max_attempts / invalid -----+-> DEADING
 *                                                     XADD s3tee:dead ok -------+ |
 *                                                                 error --> REDIS_WAIT (1 s, again)
 *
 * Every claim_idle/4 (SETTLE_MIN_MS..SETTLE_MAX_MS): intents dead proxies left are settled
 * (settle.h), on the cq connection. Every trim_interval: the stream's entries-added is
 * compared with the store's copy, to notice a Redis that lost writes (watermark.h).
 *
 * Every trim_interval: XINFO GROUPS, XPENDING (and XRANGE) per group, then XTRIM
 * s3tee:log MINID <the oldest id some group has not acknowledged>; the same round gives
 * each peer's lag, and a peer past backlog_cap (or the largest backlog, when Redis is past
 * backlog_memory_cap of its maxmemory) is marked for resync and its group restarted at the
 * stream's end, so Redis stays bounded while a peer is away (BOUNDED QUEUE below). Every METRICS_INTERVAL_MS: metrics_file (JSON, written by rename).
 *
 * Stopping: no more reads; READY and BACKOFF entries are dropped (they stay pending in
 * Redis); transfers in flight get the grace time, then are cancelled.
 */
#include "replicator/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "common/log.h"
#include "common/pool.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "queue/mutation.h"
#include "queue/queue.h"
#include "queue/stamp.h"
#include "replicator/apply.h"
#include "replicator/conf.h"
#include "replicator/rebuild.h"
#include "replicator/repair.h"
#include "replicator/settle.h"
#include "replicator/sites.h"
#include "replicator/watermark.h"
#include "replicator/gc.h"

#define STREAM "s3tee:log"
#define DEAD_STREAM "s3tee:dead"
#define REDIS_RETRY_MS 1000       /* after a Redis error: retry the group, read, ack, XADD */
#define METRICS_INTERVAL_MS 5000  /* metrics_file snapshot */
#define HEARTBEAT_CHUNK 256       /* ids per XCLAIM ... JUSTID */
#define REDIS_WARN_EVERY_MS 10000 /* one Redis-trouble warning per peer this often */
#define SHOW_MAX 300              /* bytes of a key shown in a log line */
#define REDIS_POLL_MS 100         /* PP_GROUP: how often to look for the connection */
#define REDIS_QUIET_MS 5000       /* no warning while Redis connects for this long */
#define SETTLE_MIN_MS 200         /* intents round: at most this often */
#define SETTLE_MAX_MS 5000        /* ... and at least this often */

enum peer_phase {
    PP_GROUP = 0, /* the group is being created (or will be, after an error) */
    PP_BACKLOG,   /* reading our own pending entries from cursor */
    PP_LIVE,      /* reading new entries, blocking */
};

enum entry_state {
    ES_READY = 0,  /* in peer->ready, waiting for a transfer slot */
    ES_APPLYING,   /* apply running */
    ES_BACKOFF,    /* timer until the next attempt */
    ES_DEADING,    /* XADD to s3tee:dead in flight */
    ES_ACKING,     /* XACK in flight */
    ES_REDIS_WAIT, /* XACK or XADD failed; timer until it is sent again (resume_state) */
};

struct rpeer;

/* One stream entry held for one peer. */
struct entry {
    TAILQ_ENTRY(entry) held_link;  /* in peer->held while we hold it */
    TAILQ_ENTRY(entry) ready_link; /* in peer->ready while ES_READY */
    struct rpeer *p;               /* the peer it goes to */
    enum entry_state state;        /* see the diagram */
    enum entry_state resume_state; /* ES_REDIS_WAIT: ES_ACKING or ES_DEADING */
    char id[STREAM_ID_TEXT_MAX];   /* stream id */
    struct stream_id sid;          /* the same, parsed (per-key order) */
    struct pool pool;              /* copies of the fields, display strings */
    struct slice *fields;          /* field, value, field, value ... (pool) */
    size_t npairs;                 /* pairs in fields */
    struct mutation m;             /* decoded; slices into fields */
    unsigned valid : 1;            /* mutation_decode accepted it */
    unsigned gone : 1;             /* the stream no longer has it (nil fields) */
    int attempts;                  /* unsuccessful applies in this process (backoff exponent) */
    int failures;                  /* of which failures that count toward max_attempts */
    struct apply *apply;           /* running apply, or NULL */
    struct event *timer;           /* backoff / Redis retry (owned, lazily made) */
    const char *show_key;          /* key, printable and shortened, for logs (pool) */
    const char *show_bucket;       /* bucket, the same (pool) */
    char reason[512];              /* last failure, for logs and the dead letter */
};

TAILQ_HEAD(entry_list, entry);

/* Counters for the metrics file; since start. */
struct peer_stats {
    uint64_t applied;    /* the peer applied an entry */
    uint64_t stale;      /* the peer had it already */
    uint64_t superseded; /* the local store had moved on: nothing to send */
    uint64_t retries;    /* failed attempts that will be retried */
    uint64_t future;     /* "future" answers (clock skew) */
    uint64_t dead;       /* entries sent to s3tee:dead */
};

struct worker;

struct rpeer {
    struct worker *w;                      /* owner */
    struct site *site;                     /* endpoint and key (owned by w->sites) */
    char group[8 + STAMP_SITE_MAX];        /* "peer:<site>" */
    struct queue *rq;                      /* Redis connection for this peer's reads (owned) */
    enum peer_phase phase;                 /* see the diagram */
    char cursor[STREAM_ID_TEXT_MAX];       /* PP_BACKLOG: read after this id */
    char claim_cursor[STREAM_ID_TEXT_MAX]; /* XAUTOCLAIM start */
    unsigned reading : 1;                  /* XREADGROUP in flight */
    unsigned claiming : 1;                 /* XAUTOCLAIM in flight */
    unsigned creating : 1;                 /* XGROUP CREATE in flight */
    unsigned heartbeats;                   /* XCLAIM JUSTID commands in flight */
    struct event *retry_ev;                /* group/read retry after a Redis error (owned) */
    struct entry_list held;                /* every entry we hold */
    struct entry_list ready;               /* entries waiting for a slot, oldest first */
    size_t nheld;                          /* entries in held */
    size_t nready;                         /* entries in ready */
    size_t inflight;                       /* entries applying */
    struct peer_stats st;                  /* counters */
    int64_t lag_ms;                        /* age of the oldest unacknowledged entry, -1 unknown */
    int64_t pending;                       /* the group's pending count, -1 unknown */
    int64_t warned_ms;                     /* last Redis-trouble warning */
    int64_t backlog;                       /* pending + undelivered at the last trim, -1 unknown */
    int64_t oldest_ms;                     /* time of its oldest unacknowledged entry, 0 none */
    int64_t marked_ms;                     /* when this process marked it for resync, 0 never */
    int64_t unconnected_since;             /* PP_GROUP: Redis not connected since (mono ms) */
};

/* One group as the trim round sees it. */
struct trim_group {
    char *name;                   /* group name (owned) */
    struct stream_id delivered;   /* last-delivered-id */
    long long lag;                /* XINFO lag: undelivered entries, -1 unknown */
    long long pending;            /* XPENDING count */
    struct stream_id min_pending; /* smallest pending id, when pending > 0 */
    int has_oldest;               /* oldest is set */
    struct stream_id oldest;      /* oldest entry not acknowledged by the group */
};

struct worker {
    struct event_base *evb;     /* loop (borrowed) */
    const struct repl_conf *cf; /* configuration (borrowed) */
    struct sites *sites;        /* store and peer endpoints (owned) */
    struct apply_ctx actx;      /* shared by every apply */
    struct queue *cq;           /* Redis connection for everything but reads (owned) */
    struct rpeer *peers;        /* one per configured peer (owned) */
    size_t npeers;              /* entries in peers */
    size_t rr;                  /* round-robin: the peer to look at first */
    size_t inflight;            /* applies running, all peers */
    size_t redis_busy;          /* entries with XACK / XADD in flight */
    size_t cap;                 /* most entries held per peer */
    struct event *claim_ev;     /* claim_idle/2 tick (owned) */
    struct settle *settle;      /* intents dead proxies left (owned) */
    struct repair *repair;      /* keys whose store fell behind the index (owned) */
    struct watermark *wm;       /* lost-writes check (owned) */
    struct gc *gc;              /* tombstone collection (owned) */
    struct event *trim_ev;      /* trim tick (owned) */
    struct event *metrics_ev;   /* metrics tick (owned) */
    struct event *grace_ev;     /* end of the stop grace time (owned) */
    struct event *stopped_ev;   /* calls stopped_cb from the loop (owned) */
    struct {
        int active;               /* a round is running */
        struct trim_group *g;     /* groups (owned) */
        size_t n;                 /* entries in g */
        size_t idx;               /* group being asked */
    } trim;                       /* the trim round */
    uint64_t rng;                 /* xorshift state for the jitter */
    unsigned started : 1;         /* worker_start() ran */
    unsigned stopping : 1;        /* worker_stop() ran */
    unsigned destroying : 1;      /* worker_destroy() is running */
    unsigned stop_notified : 1;   /* stopped_ev was fired */
    worker_stopped_cb stopped_cb; /* worker_stop()'s callback */
    void *stopped_arg;            /* its argument */
};

/* --- small pure helpers ---------------------------------------------------------------- */

int64_t
worker_backoff_ms(int64_t base_ms, int64_t max_ms, int attempt, uint64_t rnd)
{
    int64_t ceiling = base_ms;
    int i;

    if (base_ms <= 0) {
        return 0;
    }
    for (i = 1; i < attempt && ceiling < max_ms; i++) {
        ceiling = ceiling > max_ms / 2 ? max_ms : ceiling * 2;
    }
    if (ceiling > max_ms) {
        ceiling = max_ms;
    }
    return (int64_t)(rnd % ((uint64_t)ceiling + 1));
}

int
stream_id_parse(const char *s, size_t len, struct stream_id *out)
{
    const char *dash = memchr(s, '-', len);

    out->seq = 0;
    if (dash == NULL) {
        return slice_to_u64(slice_make(s, len), &out->ms);
    }
    if (slice_to_u64(slice_make(s, (size_t)(dash - s)), &out->ms) != 0 ||
        slice_to_u64(slice_make(dash + 1, len - (size_t)(dash - s) - 1), &out->seq) != 0) {
        return -1;
    }
    return 0;
}

void
stream_id_format(struct stream_id id, char *out)
{
    snprintf(out, STREAM_ID_TEXT_MAX, "%llu-%llu", (unsigned long long)id.ms,
             (unsigned long long)id.seq);
}

int
stream_id_cmp(struct stream_id a, struct stream_id b)
{
    if (a.ms != b.ms) {
        return a.ms < b.ms ? -1 : 1;
    }
    if (a.seq != b.seq) {
        return a.seq < b.seq ? -1 : 1;
    }
    return 0;
}

struct stream_id
stream_id_next(struct stream_id id)
{
    if (id.seq == UINT64_MAX) {
        id.ms++;
        id.seq = 0;
    } else {
        id.seq++;
    }
    return id;
}

static uint64_t
next_random(struct worker *w)
{
    uint64_t x = w->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* S printable for a log line: control bytes and '\\' as \xNN, cut at SHOW_MAX. */
static const char *
show(struct pool *p, struct slice s)
{
    size_t n = s.len < SHOW_MAX ? s.len : SHOW_MAX, i, o = 0;
    char *out = pool_alloc(p, n * 4 + 4);

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];

        if (c < 0x20 || c == 0x7f || c == '\\') {
            o += (size_t)sprintf(out + o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (n < s.len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

static void
arm(struct event *ev, int64_t ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(ev, &tv);
}

static int
reply_is_str(const redisReply *r)
{
    return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* "peer b: XREADGROUP failed: redis unavailable", at most every REDIS_WARN_EVERY_MS. */
static void
redis_warn(struct rpeer *p, const char *what, const char *errstr, const redisReply *r)
{
    int64_t now = timeutil_mono_ms();

    if (p->warned_ms != 0 && now - p->warned_ms < REDIS_WARN_EVERY_MS) {
        return;
    }
    p->warned_ms = now;
    log_warn("worker", "peer %s: %s failed: %s%s%.*s", p->site->id, what, errstr,
             r != NULL && r->type == REDIS_REPLY_ERROR ? ": " : "",
             r != NULL && r->type == REDIS_REPLY_ERROR ? (int)r->len : 0,
             r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "");
}

/* --- entries ------------------------------------------------------------------------------ */

static void pump(struct worker *w);
static void maybe_read(struct rpeer *p);
static void check_stopped(struct worker *w);
static void send_ack(struct entry *e);
static void send_dead(struct entry *e);

static struct entry *
find_held(struct rpeer *p, struct slice id)
{
    struct entry *e;

    TAILQ_FOREACH(e, &p->held, held_link)
    {
        if (slice_eq(slice_cstr(e->id), id)) {
            return e;
        }
    }
    return NULL;
}

static void
entry_free(struct entry *e)
{
    struct rpeer *p = e->p;

    if (e->state == ES_READY) {
        TAILQ_REMOVE(&p->ready, e, ready_link);
        p->nready--;
    }
    TAILQ_REMOVE(&p->held, e, held_link);
    p->nheld--;
    if (e->timer != NULL) {
        event_free(e->timer);
    }
    pool_deinit(&e->pool);
    free(e);
}

static void
make_ready(struct entry *e)
{
    e->state = ES_READY;
    TAILQ_INSERT_TAIL(&e->p->ready, e, ready_link);
    e->p->nready++;
}

static void
on_entry_timer(evutil_socket_t fd, short what, void *arg)
{
    struct entry *e = arg;
    struct worker *w = e->p->w;

    (void)fd;
    (void)what;
    if (e->state == ES_BACKOFF) {
        make_ready(e);
        pump(w);
    } else if (e->state == ES_REDIS_WAIT) {
        if (e->resume_state == ES_DEADING) {
            send_dead(e);
        } else {
            send_ack(e);
        }
    }
}

static void
entry_wait(struct entry *e, enum entry_state st, int64_t ms)
{
    if (e->timer == NULL) {
        e->timer = evtimer_new(e->p->w->evb, on_entry_timer, e);
    }
    e->state = st;
    arm(e->timer, ms);
}

static void
on_acked(void *arg, const char *errstr, redisReply *r)
{
    struct entry *e = arg;
    struct rpeer *p = e->p;
    struct worker *w = p->w;

    w->redis_busy--;
    if (errstr != NULL && !w->stopping) {
        redis_warn(p, "XACK", errstr, r);
        e->resume_state = ES_ACKING;
        entry_wait(e, ES_REDIS_WAIT, REDIS_RETRY_MS);
        return;
    }
    /* acknowledged; or we are stopping and leave it pending (applying it again is harmless) */
    entry_free(e);
    if (w->stopping) {
        check_stopped(w);
        return;
    }
    pump(w);
}

static void
send_ack(struct entry *e)
{
    struct worker *w = e->p->w;
    const char *argv[4] = {"XACK", STREAM, e->p->group, e->id};
    size_t len[4] = {4, sizeof(STREAM) - 1, strlen(e->p->group), strlen(e->id)};

    e->state = ES_ACKING;
    w->redis_busy++;
    if (queue_command_argv(w->cq, 4, argv, len, on_acked, e) != 0) {
        on_acked(e, queue_err_shutdown, NULL);
    }
}

static void
on_dead_added(void *arg, const char *errstr, redisReply *r)
{
    struct entry *e = arg;
    struct rpeer *p = e->p;
    struct worker *w = p->w;

    w->redis_busy--;
    if (errstr != NULL) {
        redis_warn(p, "XADD " DEAD_STREAM, errstr, r);
        if (w->stopping) {
            entry_free(e); /* still pending: the next run dead-letters it again */
            check_stopped(w);
            return;
        }
        e->resume_state = ES_DEADING;
        entry_wait(e, ES_REDIS_WAIT, REDIS_RETRY_MS);
        return;
    }
    p->st.dead++;
    log_error("worker", "dead letter: bucket=%s key=%s peer=%s attempts=%d entry=%s reason: %s",
              e->show_bucket, e->show_key, p->site->id, e->attempts, e->id, e->reason);
    send_ack(e);
}

/* XADD s3tee:dead * <entry fields> peer <site> reason <text> attempts <n> */
static void
send_dead(struct entry *e)
{
    struct worker *w = e->p->w;
    size_t argc = 3 + 2 * e->npairs + 6, i, k = 0;
    const char **argv = xmalloc(sizeof(*argv) * argc);
    size_t *len = xmalloc(sizeof(*len) * argc);
    char attempts[24];
    int rc;

    snprintf(attempts, sizeof(attempts), "%d", e->attempts);
    argv[k] = "XADD";
    len[k++] = 4;
    argv[k] = DEAD_STREAM;
    len[k++] = sizeof(DEAD_STREAM) - 1;
    argv[k] = "*";
    len[k++] = 1;
    for (i = 0; i < 2 * e->npairs; i++) {
        argv[k] = e->fields[i].ptr;
        len[k++] = e->fields[i].len;
    }
    argv[k] = "peer";
    len[k++] = 4;
    argv[k] = e->p->site->id;
    len[k++] = strlen(e->p->site->id);
    argv[k] = "reason";
    len[k++] = 6;
    argv[k] = e->reason;
    len[k++] = strlen(e->reason);
    argv[k] = "attempts";
    len[k++] = 8;
    argv[k] = attempts;
    len[k++] = strlen(attempts);
    e->state = ES_DEADING;
    w->redis_busy++;
    rc = queue_command_argv(w->cq, (int)k, argv, len, on_dead_added, e);
    free(argv);
    free(len);
    if (rc != 0) {
        on_dead_added(e, queue_err_shutdown, NULL);
    }
}

static void
on_applied(void *arg, const struct apply_result *res)
{
    struct entry *e = arg;
    struct rpeer *p = e->p;
    struct worker *w = p->w;
    int64_t delay;

    e->apply = NULL;
    p->inflight--;
    w->inflight--;
    snprintf(e->reason, sizeof(e->reason), "%s", res->reason);
    switch (res->outcome) {
    case APPLY_APPLIED:
    case APPLY_STALE:
    case APPLY_SUPERSEDED:
        if (res->outcome == APPLY_APPLIED) {
            p->st.applied++;
        } else if (res->outcome == APPLY_STALE) {
            p->st.stale++;
        } else {
            p->st.superseded++;
            log_info("worker", "peer %s: bucket=%s key=%s entry=%s skipped: %s", p->site->id,
                     e->show_bucket, e->show_key, e->id, res->reason);
        }
        if (res->peer_etag[0] != '\0' && e->m.etag.len > 0 &&
            !slice_eq(slice_cstr(res->peer_etag), e->m.etag)) {
            /* SSE or a store with other ETag rules; the bytes were streamed with their length */
            log_warn("worker",
                     "peer %s: bucket=%s key=%s entry=%s stored with ETag %s, the origin "
                     "has %.*s",
                     p->site->id, e->show_bucket, e->show_key, e->id, res->peer_etag,
                     SLICE_ARGS(e->m.etag));
        }
        log_debug("worker", "peer %s: bucket=%s key=%s op=%s entry=%s %s after %d failures",
                  p->site->id, e->show_bucket, e->show_key, mutation_op_name(e->m.op), e->id,
                  apply_outcome_name(res->outcome), e->attempts);
        send_ack(e);
        break;
    case APPLY_CANCELLED:
        entry_free(e); /* stays pending in Redis */
        break;
    case APPLY_INVALID:
        if (w->stopping) {
            entry_free(e);
            break;
        }
        e->attempts++;
        log_error("worker", "peer %s: bucket=%s key=%s entry=%s cannot be applied: %s", p->site->id,
                  e->show_bucket, e->show_key, e->id, res->reason);
        send_dead(e);
        break;
    case APPLY_FUTURE:
    case APPLY_UNAVAILABLE:
    case APPLY_FAILED:
        e->attempts++;
        if (res->outcome == APPLY_FUTURE) {
            struct stamp st;
            char skew[96];

            p->st.future++;
            if (res->skew_known) {
                snprintf(skew, sizeof(skew), "%.1fs ahead of its Date header",
                         (double)res->skew_ms / 1000.0);
            } else {
                /* no Date from the peer: how far the stamp is from our own clock */
                snprintf(skew, sizeof(skew), "%.1fs from this site's clock; the peer sent no Date",
                         stamp_parse(e->m.stamp, &st) == 0
                             ? (double)(stamp_ms(&st) - timeutil_now_ms()) / 1000.0
                             : 0.0);
            }
            log_warn("worker",
                     "ALARM clock skew: peer %s refuses bucket=%s key=%s stamp %.*s as too far in "
                     "its future (%s; attempt %d, retried, never dead-lettered)",
                     p->site->id, e->show_bucket, e->show_key, SLICE_ARGS(e->m.stamp), skew,
                     e->attempts);
        }
        if (w->stopping) {
            entry_free(e);
            break;
        }
        if (res->outcome == APPLY_FAILED && ++e->failures >= w->cf->max_attempts) {
            send_dead(e);
            break;
        }
        p->st.retries++;
        delay = worker_backoff_ms(w->cf->retry_base_ms, w->cf->retry_max_ms, e->attempts,
                                  next_random(w));
        if (res->outcome == APPLY_UNAVAILABLE && e->attempts == 1) {
            log_warn("worker", "peer %s: bucket=%s key=%s entry=%s waits, retried until it "
                               "goes through: %s",
                     p->site->id, e->show_bucket, e->show_key, e->id, res->reason);
        }
        if (res->outcome == APPLY_FAILED) {
            log_info("worker",
                     "peer %s: bucket=%s key=%s entry=%s failure %d of %d, retry in "
                     "%lld ms: %s",
                     p->site->id, e->show_bucket, e->show_key, e->id, e->failures,
                     w->cf->max_attempts, (long long)delay, res->reason);
        }
        entry_wait(e, ES_BACKOFF, delay);
        break;
    }
    if (w->stopping) {
        check_stopped(w);
        return;
    }
    pump(w);
}

static void
start_entry(struct worker *w, struct entry *e)
{
    struct rpeer *p = e->p;

    TAILQ_REMOVE(&p->ready, e, ready_link);
    p->nready--;
    e->state = ES_APPLYING;
    p->inflight++;
    w->inflight++;
    e->apply = apply_start(&w->actx, p->site, &e->m, on_applied, e);
}

/*
 * 1 if an older entry for the same key (same peer) is still to be applied: entries of one
 * key go to a peer in stream order, so a tagging or a delete does not overtake its PUT
 * (the peer would answer 404, or hold a lease the other write waits for).
 */
static int
blocked(const struct entry *e)
{
    const struct entry *o;

    TAILQ_FOREACH(o, &e->p->held, held_link)
    {
        if (o != e && (o->state == ES_READY || o->state == ES_APPLYING || o->state == ES_BACKOFF) &&
            stream_id_cmp(o->sid, e->sid) < 0 && slice_eq(o->m.key, e->m.key) &&
            slice_eq(o->m.bucket, e->m.bucket)) {
            return 1;
        }
    }
    return 0;
}

/* The oldest ready entry of P that may start now, or NULL. */
static struct entry *
next_startable(struct rpeer *p)
{
    struct entry *e;

    TAILQ_FOREACH(e, &p->ready, ready_link)
    {
        if (!blocked(e)) {
            return e;
        }
    }
    return NULL;
}

/* Starts ready entries while slots are free, one peer after the other; then reads. */
static void
pump(struct worker *w)
{
    size_t i, k;

    if (w->stopping) {
        return;
    }
    while (w->inflight < (size_t)w->cf->concurrency) {
        for (k = 0; k < w->npeers; k++) {
            struct rpeer *p = &w->peers[(w->rr + k) % w->npeers];
            struct entry *e = p->nready > 0 ? next_startable(p) : NULL;

            if (e != NULL) {
                start_entry(w, e);
                w->rr = (w->rr + k + 1) % w->npeers;
                break;
            }
        }
        if (k == w->npeers) {
            break;
        }
    }
    for (i = 0; i < w->npeers; i++) {
        maybe_read(&w->peers[i]);
    }
}

/* Takes one [id, [field, value, ...]] element of a read or claim answer. */
static void
ingest(struct rpeer *p, const redisReply *r)
{
    struct entry *e;
    const redisReply *f;
    size_t i;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        !reply_is_str(r->element[0]) || r->element[0]->len >= STREAM_ID_TEXT_MAX) {
        return;
    }
    if (find_held(p, slice_make(r->element[0]->str, r->element[0]->len)) != NULL) {
        return; /* we hold it already (a backlog re-read, a claim of our own entry) */
    }
    e = xcalloc(1, sizeof(*e));
    e->p = p;
    pool_init(&e->pool);
    memcpy(e->id, r->element[0]->str, r->element[0]->len);
    if (stream_id_parse(e->id, strlen(e->id), &e->sid) != 0) {
        e->sid.ms = e->sid.seq = UINT64_MAX; /* not an id Redis makes; keep it last */
    }
    f = r->element[1];
    TAILQ_INSERT_TAIL(&p->held, e, held_link);
    p->nheld++;
    if (f == NULL || f->type != REDIS_REPLY_ARRAY) {
        /* deleted from the stream while pending: nothing left to apply */
        e->gone = 1;
        e->show_bucket = e->show_key = "?";
        log_warn("worker", "peer %s: entry %s is pending but no longer in %s; acknowledging it",
                 p->site->id, e->id, STREAM);
        send_ack(e);
        return;
    }
    e->npairs = f->elements / 2;
    e->fields = pool_alloc(&e->pool, sizeof(struct slice) * (2 * e->npairs + 1));
    for (i = 0; i < 2 * e->npairs; i++) {
        const redisReply *x = f->element[i];

        e->fields[i] = reply_is_str(x) ? pool_slice_dup(&e->pool, slice_make(x->str, x->len))
                                       : pool_slice_dup(&e->pool, SLICE_LIT(""));
    }
    e->valid = mutation_decode(e->fields, e->npairs, &e->m) == 0;
    if (!e->valid) {
        /* whatever it names, the bucket and key fields help whoever reads the dead letter */
        struct slice b = SLICE_LIT("?"), k = SLICE_LIT("?");

        for (i = 0; i + 1 < 2 * e->npairs; i += 2) {
            if (slice_eq(e->fields[i], SLICE_LIT("bucket"))) {
                b = e->fields[i + 1];
            } else if (slice_eq(e->fields[i], SLICE_LIT("key"))) {
                k = e->fields[i + 1];
            }
        }
        e->show_bucket = show(&e->pool, b);
        e->show_key = show(&e->pool, k);
        snprintf(e->reason, sizeof(e->reason),
                 "malformed entry (op, bucket, key or stamp missing or unreadable)");
        log_error("worker", "peer %s: entry %s bucket=%s key=%s is malformed", p->site->id, e->id,
                  e->show_bucket, e->show_key);
        send_dead(e);
        return;
    }
    e->show_bucket = show(&e->pool, e->m.bucket);
    e->show_key = show(&e->pool, e->m.key);
    make_ready(e);
}

/* Entries of an XREADGROUP answer: nil, or [[stream, [entry...]]]. Returns how many. */
static size_t
ingest_read(struct rpeer *p, const redisReply *r, char *last_id)
{
    size_t i, j, n = 0;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        return 0;
    }
    for (i = 0; i < r->elements; i++) {
        const redisReply *s = r->element[i], *list;

        if (s == NULL || s->type != REDIS_REPLY_ARRAY || s->elements < 2) {
            continue;
        }
        list = s->element[1];
        if (list == NULL || list->type != REDIS_REPLY_ARRAY) {
            continue;
        }
        for (j = 0; j < list->elements; j++) {
            const redisReply *x = list->element[j];

            ingest(p, x);
            n++;
            if (x != NULL && x->type == REDIS_REPLY_ARRAY && x->elements >= 1 &&
                reply_is_str(x->element[0]) && x->element[0]->len < STREAM_ID_TEXT_MAX) {
                memcpy(last_id, x->element[0]->str, x->element[0]->len);
                last_id[x->element[0]->len] = '\0';
            }
        }
    }
    return n;
}

/* --- reading -------------------------------------------------------------------------------- */

static void create_group(struct rpeer *p);
static void claim(struct rpeer *p);

static void
on_peer_retry(evutil_socket_t fd, short what, void *arg)
{
    struct rpeer *p = arg;

    (void)fd;
    (void)what;
    if (p->phase == PP_GROUP) {
        create_group(p);
    } else {
        maybe_read(p);
    }
}

static void
on_read(void *arg, const char *errstr, redisReply *r)
{
    struct rpeer *p = arg;
    struct worker *w = p->w;
    char last[STREAM_ID_TEXT_MAX] = "";
    size_t n;

    p->reading = 0;
    if (w->destroying) {
        return;
    }
    if (errstr != NULL) {
        if (w->stopping) {
            return;
        }
        redis_warn(p, "XREADGROUP", errstr, r);
        /* the group may be gone (NOGROUP), and a lost answer leaves entries pending under
         * our name: create the group again (BUSYGROUP is fine), then re-read our backlog */
        p->phase = PP_GROUP;
        arm(p->retry_ev, REDIS_RETRY_MS);
        return;
    }
    if (w->stopping) {
        return; /* whatever was delivered stays pending under our name */
    }
    n = ingest_read(p, r, last);
    if (p->phase == PP_BACKLOG) {
        if (n == 0) {
            p->phase = PP_LIVE;
            log_debug("worker", "peer %s: backlog of consumer %s read; now reading new entries",
                      p->site->id, w->cf->consumer);
        } else if (last[0] != '\0') {
            memcpy(p->cursor, last, sizeof(p->cursor));
        }
    }
    pump(w);
}

static void
maybe_read(struct rpeer *p)
{
    struct worker *w = p->w;
    const struct repl_conf *cf = w->cf;
    char count[24], block[24];
    const char *argv[12];
    size_t len[12], i;
    size_t room;
    int argc = 0;

    if (w->stopping || p->reading || p->phase == PP_GROUP || p->nready >= (size_t)cf->batch ||
        evtimer_pending(p->retry_ev, NULL)) {
        return;
    }
    room = w->cap > p->nheld ? w->cap - p->nheld : 0;
    if (room == 0) {
        return;
    }
    snprintf(count, sizeof(count), "%zu", room < (size_t)cf->batch ? room : (size_t)cf->batch);
    snprintf(block, sizeof(block), "%lld", (long long)cf->block_ms);
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = p->group;
    argv[argc++] = cf->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = count;
    if (p->phase == PP_LIVE) {
        argv[argc++] = "BLOCK";
        argv[argc++] = block;
    }
    argv[argc++] = "STREAMS";
    argv[argc++] = STREAM;
    argv[argc++] = p->phase == PP_LIVE ? ">" : p->cursor;
    for (i = 0; i < (size_t)argc; i++) {
        len[i] = strlen(argv[i]);
    }
    p->reading = 1;
    if (queue_command_argv_timeout(p->rq, cf->command_timeout_ms + cf->block_ms, argc, argv, len,
                                   on_read, p) != 0) {
        p->reading = 0;
    }
}

static void
on_group(void *arg, const char *errstr, redisReply *r)
{
    struct rpeer *p = arg;
    struct worker *w = p->w;

    p->creating = 0;
    if (w->destroying || w->stopping) {
        return;
    }
    if (errstr != NULL &&
        !(r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) == 0)) {
        redis_warn(p, "XGROUP CREATE", errstr, r);
        arm(p->retry_ev, REDIS_RETRY_MS);
        return;
    }
    log_debug("worker", "peer %s: group %s ready", p->site->id, p->group);
    p->phase = PP_BACKLOG;
    strcpy(p->cursor, "0");
    maybe_read(p);
    claim(p);
}

static void
create_group(struct rpeer *p)
{
    const char *argv[6] = {"XGROUP", "CREATE", STREAM, p->group, "0", "MKSTREAM"};
    size_t len[6], i;

    if (p->creating || p->w->stopping) {
        return;
    }
    if (!queue_connected(p->w->cq)) {
        /* at start the connection is still being made: wait quietly for a while */
        int64_t now = timeutil_mono_ms();

        if (p->unconnected_since == 0) {
            p->unconnected_since = now;
        } else if (now - p->unconnected_since > REDIS_QUIET_MS) {
            redis_warn(p, "connecting to Redis", queue_err_unavailable, NULL);
        }
        arm(p->retry_ev, REDIS_POLL_MS);
        return;
    }
    p->unconnected_since = 0;
    for (i = 0; i < 6; i++) {
        len[i] = strlen(argv[i]);
    }
    p->creating = 1;
    if (queue_command_argv(p->w->cq, 6, argv, len, on_group, p) != 0) {
        p->creating = 0;
    }
}

/* --- claiming --------------------------------------------------------------------------- */

static void
on_heartbeat(void *arg, const char *errstr, redisReply *r)
{
    struct rpeer *p = arg;

    p->heartbeats--;
    if (errstr != NULL && !p->w->destroying) {
        redis_warn(p, "XCLAIM JUSTID", errstr, r);
    }
}

/* XCLAIM s3tee:log <group> <consumer> 0 <ids...> JUSTID: our entries stay ours. */
static void
heartbeat(struct rpeer *p)
{
    struct worker *w = p->w;
    size_t max = 5 + HEARTBEAT_CHUNK + 1;
    const char **argv = xmalloc(sizeof(*argv) * max);
    size_t *len = xmalloc(sizeof(*len) * max);
    struct entry *e = TAILQ_FIRST(&p->held);

    while (e != NULL) {
        size_t k = 0, i;

        argv[k++] = "XCLAIM";
        argv[k++] = STREAM;
        argv[k++] = p->group;
        argv[k++] = w->cf->consumer;
        argv[k++] = "0";
        for (; e != NULL && k < 5 + HEARTBEAT_CHUNK; e = TAILQ_NEXT(e, held_link)) {
            argv[k++] = e->id;
        }
        argv[k++] = "JUSTID";
        for (i = 0; i < k; i++) {
            len[i] = strlen(argv[i]);
        }
        p->heartbeats++;
        if (queue_command_argv(w->cq, (int)k, argv, len, on_heartbeat, p) != 0) {
            p->heartbeats--;
            break;
        }
    }
    free(argv);
    free(len);
}

static void
on_claim(void *arg, const char *errstr, redisReply *r)
{
    struct rpeer *p = arg;
    struct worker *w = p->w;
    size_t i, n = 0;

    p->claiming = 0;
    if (w->destroying || w->stopping) {
        return;
    }
    if (errstr != NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        !reply_is_str(r->element[0]) || r->element[0]->len >= STREAM_ID_TEXT_MAX) {
        redis_warn(p, "XAUTOCLAIM", errstr ? errstr : queue_err_reply, r);
        return; /* the next tick tries again */
    }
    memcpy(p->claim_cursor, r->element[0]->str, r->element[0]->len);
    p->claim_cursor[r->element[0]->len] = '\0';
    if (r->element[1] != NULL && r->element[1]->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < r->element[1]->elements; i++) {
            size_t before = p->nheld;

            ingest(p, r->element[1]->element[i]);
            n += p->nheld > before;
        }
    }
    if (n > 0) {
        log_info("worker", "peer %s: claimed %zu entries idle for %lld ms or more", p->site->id, n,
                 (long long)w->cf->claim_idle_ms);
    }
    if (strcmp(p->claim_cursor, "0-0") != 0 && p->nheld < w->cap) {
        claim(p); /* more to scan */
    }
    pump(w);
}

/* XAUTOCLAIM s3tee:log <group> <consumer> <claim_idle> <cursor> COUNT n */
static void
claim(struct rpeer *p)
{
    struct worker *w = p->w;
    char idle[24], count[24];
    const char *argv[8];
    size_t len[8], i, room;

    if (w->stopping || p->claiming || p->phase == PP_GROUP || p->nheld >= w->cap) {
        return;
    }
    room = w->cap - p->nheld;
    snprintf(idle, sizeof(idle), "%lld", (long long)w->cf->claim_idle_ms);
    snprintf(count, sizeof(count), "%zu",
             room < (size_t)w->cf->batch ? room : (size_t)w->cf->batch);
    argv[0] = "XAUTOCLAIM";
    argv[1] = STREAM;
    argv[2] = p->group;
    argv[3] = w->cf->consumer;
    argv[4] = idle;
    argv[5] = p->claim_cursor;
    argv[6] = "COUNT";
    argv[7] = count;
    for (i = 0; i < 8; i++) {
        len[i] = strlen(argv[i]);
    }
    p->claiming = 1;
    if (queue_command_argv(w->cq, 8, argv, len, on_claim, p) != 0) {
        p->claiming = 0;
    }
}

static void
on_claim_tick(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    size_t i;

    (void)fd;
    (void)what;
    for (i = 0; i < w->npeers; i++) {
        struct rpeer *p = &w->peers[i];

        if (p->phase == PP_GROUP) {
            continue;
        }
        heartbeat(p);
        claim(p);
    }
}

/* --- trimming and lag ----------------------------------------------------------------------- */

static void trim_next(struct worker *w);
static void backlog_check(struct worker *w);

static void
trim_end(struct worker *w)
{
    size_t i;

    for (i = 0; i < w->trim.n; i++) {
        free(w->trim.g[i].name);
    }
    free(w->trim.g);
    w->trim.g = NULL;
    w->trim.n = 0;
    w->trim.active = 0;
}

static void
on_trimmed(void *arg, const char *errstr, redisReply *r)
{
    (void)arg;
    if (errstr != NULL) {
        log_warn("worker", "XTRIM %s failed: %s", STREAM, errstr);
    } else if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
        log_debug("worker", "trimmed %lld entries acknowledged by every group", r->integer);
    }
}

/*
 * The first id every group still needs: a group needs its smallest pending id, or else
 * whatever follows its last-delivered id. Entries below the result are acknowledged by
 * every group. Returns -1 when there is no group (nothing may be trimmed).
 */
static int
trim_minid(const struct trim_group *g, size_t n, struct stream_id *out)
{
    struct stream_id minid = {UINT64_MAX, UINT64_MAX};
    size_t i;

    if (n == 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        struct stream_id keep =
            g[i].pending > 0 ? g[i].min_pending : stream_id_next(g[i].delivered);

        if (stream_id_cmp(keep, minid) < 0) {
            minid = keep;
        }
    }
    *out = minid;
    return 0;
}

/* Every group has answered: trim below the oldest unacknowledged entry; record lags. */
static void
trim_finish(struct worker *w)
{
    struct stream_id minid;
    int64_t now = timeutil_now_ms();
    char idtext[STREAM_ID_TEXT_MAX];
    size_t i, j;

    for (i = 0; i < w->trim.n; i++) {
        const struct trim_group *g = &w->trim.g[i];

        for (j = 0; j < w->npeers; j++) {
            struct rpeer *p = &w->peers[j];

            if (strcmp(p->group, g->name) == 0) {
                p->pending = g->pending;
                p->lag_ms =
                    g->has_oldest && now > (int64_t)g->oldest.ms ? now - (int64_t)g->oldest.ms : 0;
                p->backlog = g->pending + (g->lag > 0 ? g->lag : 0);
                p->oldest_ms = g->has_oldest ? (int64_t)g->oldest.ms : 0;
            }
        }
    }
    if (trim_minid(w->trim.g, w->trim.n, &minid) == 0 && !w->stopping) {
        const char *argv[5] = {"XTRIM", STREAM, "MINID", idtext, NULL};
        size_t len[4];

        stream_id_format(minid, idtext);
        for (i = 0; i < 4; i++) {
            len[i] = strlen(argv[i]);
        }
        if (queue_command_argv(w->cq, 4, argv, len, on_trimmed, w) != 0) {
            /* shutting down */
        }
    }
    trim_end(w);
    if (!w->stopping) {
        backlog_check(w);
    }
}

static void
on_trim_range(void *arg, const char *errstr, redisReply *r)
{
    struct worker *w = arg;
    struct trim_group *g;
    const redisReply *x;

    if (w->destroying) {
        return;
    }
    if (errstr != NULL) {
        trim_end(w);
        return;
    }
    g = &w->trim.g[w->trim.idx];
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
        (x = r->element[0]) != NULL && x->type == REDIS_REPLY_ARRAY && x->elements > 0 &&
        reply_is_str(x->element[0]) &&
        stream_id_parse(x->element[0]->str, x->element[0]->len, &g->oldest) == 0) {
        g->has_oldest = 1;
    }
    w->trim.idx++;
    trim_next(w);
}

static void
on_trim_pending(void *arg, const char *errstr, redisReply *r)
{
    struct worker *w = arg;
    struct trim_group *g;

    if (w->destroying) {
        return;
    }
    if (errstr != NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        trim_end(w); /* never trim on a partial picture */
        return;
    }
    g = &w->trim.g[w->trim.idx];
    g->pending = r->element[0]->integer;
    if (g->pending > 0) {
        if (!reply_is_str(r->element[1]) ||
            stream_id_parse(r->element[1]->str, r->element[1]->len, &g->min_pending) != 0) {
            trim_end(w);
            return;
        }
        g->oldest = g->min_pending;
        g->has_oldest = 1;
    } else if (g->lag != 0) {
        /* nothing pending but entries not yet delivered: the first of them is the oldest */
        char from[STREAM_ID_TEXT_MAX + 1];
        const char *argv[6] = {"XRANGE", STREAM, from, "+", "COUNT", "1"};
        size_t len[6], i;

        from[0] = '(';
        stream_id_format(g->delivered, from + 1);
        for (i = 0; i < 6; i++) {
            len[i] = strlen(argv[i]);
        }
        if (queue_command_argv(w->cq, 6, argv, len, on_trim_range, w) != 0) {
            trim_end(w);
        }
        return;
    }
    w->trim.idx++;
    trim_next(w);
}

static void
trim_next(struct worker *w)
{
    const char *argv[3];
    size_t len[3], i;

    if (w->trim.idx == w->trim.n) {
        trim_finish(w);
        return;
    }
    argv[0] = "XPENDING";
    argv[1] = STREAM;
    argv[2] = w->trim.g[w->trim.idx].name;
    for (i = 0; i < 3; i++) {
        len[i] = strlen(argv[i]);
    }
    if (queue_command_argv(w->cq, 3, argv, len, on_trim_pending, w) != 0) {
        trim_end(w);
    }
}

/* --- bounded queue: a peer too far behind is marked for resync -------------------------------- */

struct backlog_mark {
    struct worker *w;
    size_t peer;        /* index in w->peers */
    char reason[160];
};

static void
on_backlog_marked(void *arg, const char *errstr, int64_t since_ms)
{
    struct backlog_mark *m = arg;
    struct rpeer *p = &m->w->peers[m->peer];

    if (m->w->destroying) {
        free(m);
        return;
    }
    if (errstr != NULL) {
        log_warn("worker", "peer %s: could not mark it for resync (%s): %s", p->site->id,
                 m->reason, errstr);
    } else {
        char since[TIMEUTIL_ISO_LEN];

        timeutil_iso8601(since_ms, since);
        p->marked_ms = timeutil_now_ms();
        log_error("worker", "ALARM peer %s marked for resync from %s: %s; its queue was dropped "
                            "so Redis stays bounded (key s3tee:rebuild:%s); local writes go on. "
                            "When it is back: s3tee resync --peer %s --bucket BUCKET",
                  p->site->id, since, m->reason, p->site->id, p->site->id);
    }
    free(m);
}

/*
 * DESIGN.md: "A peer whose backlog passes a cap is marked 'resync from T': its stream is
 * trimmed, an alarm is raised, and local writes keep succeeding." T is the peer's oldest
 * unacknowledged write; its group restarts at the stream's end (rebuild.h).
 */
static void
backlog_mark(struct worker *w, size_t i, const char *reason)
{
    struct rpeer *p = &w->peers[i];
    struct backlog_mark *m = xcalloc(1, sizeof(*m));

    m->w = w;
    m->peer = i;
    snprintf(m->reason, sizeof(m->reason), "%s", reason);
    p->backlog = 0; /* not again before the next round has measured it afresh */
    if (rebuild_mark(w->cq, p->site->id, w->cf->site_id,
                     p->oldest_ms > 0 ? p->oldest_ms : timeutil_now_ms(), m->reason, 1,
                     on_backlog_marked, m) != 0) {
        free(m);
    }
}

/* "used_memory:123\r\n" in an INFO answer; -1 when absent. */
static long long
info_field(const char *info, size_t n, const char *name)
{
    size_t nl = strlen(name);
    const char *p = info, *end = info + n;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t ll = eol ? (size_t)(eol - p) : (size_t)(end - p);

        if (ll > nl && memcmp(p, name, nl) == 0 && p[nl] == ':') {
            return strtoll(p + nl + 1, NULL, 10);
        }
        p += ll + 1;
    }
    return -1;
}

static void
on_backlog_memory(void *arg, const char *errstr, redisReply *r)
{
    struct worker *w = arg;
    long long used, max;
    size_t i, worst = 0;
    int64_t most = 0;
    char reason[160];

    if (w->destroying || w->stopping || errstr != NULL || r == NULL ||
        r->type != REDIS_REPLY_STRING) {
        return;
    }
    used = info_field(r->str, r->len, "used_memory");
    max = info_field(r->str, r->len, "maxmemory");
    if (used < 0 || max <= 0 || used * 100 <= max * (long long)w->cf->backlog_memory_cap) {
        return;
    }
    for (i = 0; i < w->npeers; i++) {
        if (w->peers[i].backlog > most) {
            most = w->peers[i].backlog;
            worst = i;
        }
    }
    if (most == 0) {
        log_warn("worker", "Redis uses %lld of maxmemory %lld bytes (over backlog_memory_cap "
                           "%d%%), but no peer has a backlog to drop",
                 used, max, w->cf->backlog_memory_cap);
        return;
    }
    snprintf(reason, sizeof(reason), "Redis uses %lld%% of its maxmemory (backlog_memory_cap "
                                     "%d%%) and this peer owes the most, %lld entries",
             used * 100 / max, w->cf->backlog_memory_cap, (long long)most);
    backlog_mark(w, worst, reason);
}

static void
backlog_check(struct worker *w)
{
    size_t i;
    char reason[160];

    if (w->cf->backlog_cap > 0) {
        for (i = 0; i < w->npeers; i++) {
            if (w->peers[i].backlog > (int64_t)w->cf->backlog_cap) {
                snprintf(reason, sizeof(reason), "it owes %lld entries, over backlog_cap %d",
                         (long long)w->peers[i].backlog, w->cf->backlog_cap);
                backlog_mark(w, i, reason);
            }
        }
    }
    if (w->cf->backlog_memory_cap > 0) {
        const char *argv[2] = {"INFO", "memory"};
        size_t len[2] = {4, 6};

        if (queue_command_argv(w->cq, 2, argv, len, on_backlog_memory, w) != 0) {
            /* shutting down */
        }
    }
}

/* One XINFO GROUPS element: [name, v, consumers, v, pending, v, last-delivered-id, v, ...]. */
static int
parse_group(const redisReply *x, struct trim_group *g)
{
    size_t i;
    int have_name = 0, have_delivered = 0;

    g->lag = -1;
    if (x == NULL || x->type != REDIS_REPLY_ARRAY) {
        return -1;
    }
    for (i = 0; i + 1 < x->elements; i += 2) {
        const redisReply *k = x->element[i], *v = x->element[i + 1];

        if (!reply_is_str(k)) {
            continue;
        }
        if (strcmp(k->str, "name") == 0 && reply_is_str(v)) {
            g->name = xstrndup(v->str, v->len);
            have_name = 1;
        } else if (strcmp(k->str, "last-delivered-id") == 0 && reply_is_str(v)) {
            have_delivered = stream_id_parse(v->str, v->len, &g->delivered) == 0;
        } else if (strcmp(k->str, "lag") == 0) {
            g->lag = v != NULL && v->type == REDIS_REPLY_INTEGER ? v->integer : -1;
        }
    }
    return have_name && have_delivered ? 0 : -1;
}

static void
on_trim_groups(void *arg, const char *errstr, redisReply *r)
{
    struct worker *w = arg;
    size_t i;

    if (w->destroying) {
        return;
    }
    if (errstr != NULL || r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (errstr != queue_err_reply) {
            log_debug("worker", "XINFO GROUPS %s failed: %s", STREAM,
                      errstr ? errstr : "bad reply");
        }
        w->trim.active = 0;
        return;
    }
    w->trim.g = xcalloc(r->elements + 1, sizeof(*w->trim.g));
    for (i = 0; i < r->elements; i++) {
        if (parse_group(r->element[i], &w->trim.g[w->trim.n]) != 0) {
            free(w->trim.g[w->trim.n].name);
            trim_end(w);
            return;
        }
        w->trim.n++;
    }
    w->trim.idx = 0;
    trim_next(w);
}

static void
on_trim_tick(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    const char *argv[3] = {"XINFO", "GROUPS", STREAM};
    size_t len[3] = {5, 6, sizeof(STREAM) - 1}, i;

    (void)fd;
    (void)what;
    if (w->trim.active || w->stopping) {
        return;
    }
    for (i = 0; i < w->npeers; i++) {
        if (w->peers[i].phase == PP_GROUP) {
            return; /* a group that does not exist yet would not hold anything back */
        }
    }
    /* last-delivered ids first, pending summaries after: entries delivered in between are
     * above the ids we read, so the picture can only be too cautious */
    w->trim.active = 1;
    if (queue_command_argv(w->cq, 3, argv, len, on_trim_groups, w) != 0) {
        w->trim.active = 0;
    }
}

/* --- metrics ------------------------------------------------------------------------------ */

static void
write_metrics(struct worker *w)
{
    json_t *root = json_object(), *peers = json_object();
    char ts[TIMEUTIL_ISO_LEN], *tmp;
    size_t i;
    int rc;

    timeutil_iso8601_now(ts);
    json_object_set_new(root, "site", json_string(w->cf->site_id));
    json_object_set_new(root, "consumer", json_string(w->cf->consumer));
    json_object_set_new(root, "time", json_string(ts));
    json_object_set_new(root, "inflight", json_integer((json_int_t)w->inflight));
    for (i = 0; i < w->npeers; i++) {
        const struct rpeer *p = &w->peers[i];
        json_t *o = json_object();

        json_object_set_new(o, "applied", json_integer((json_int_t)p->st.applied));
        json_object_set_new(o, "stale", json_integer((json_int_t)p->st.stale));
        json_object_set_new(o, "superseded", json_integer((json_int_t)p->st.superseded));
        json_object_set_new(o, "retries", json_integer((json_int_t)p->st.retries));
        json_object_set_new(o, "future", json_integer((json_int_t)p->st.future));
        json_object_set_new(o, "dead", json_integer((json_int_t)p->st.dead));
        json_object_set_new(o, "inflight", json_integer((json_int_t)p->inflight));
        json_object_set_new(o, "held", json_integer((json_int_t)p->nheld));
        json_object_set_new(o, "pending",
                            p->pending < 0 ? json_null() : json_integer((json_int_t)p->pending));
        json_object_set_new(o, "lag_ms",
                            p->lag_ms < 0 ? json_null() : json_integer((json_int_t)p->lag_ms));
        json_object_set_new(o, "backlog",
                            p->backlog < 0 ? json_null() : json_integer((json_int_t)p->backlog));
        json_object_set_new(o, "marked_for_resync_ms",
                            p->marked_ms ? json_integer((json_int_t)p->marked_ms) : json_null());
        json_object_set_new(peers, p->site->id, o);
    }
    json_object_set_new(root, "peers", peers);
    {
        const struct gc_stats *gs = gc_stats(w->gc);
        json_t *o = json_object();

        json_object_set_new(o, "low_water_ms", json_integer((json_int_t)gs->low_water_ms));
        json_object_set_new(o, "horizon_ms", json_integer((json_int_t)gs->horizon_ms));
        json_object_set_new(o, "tombstones_dropped", json_integer((json_int_t)gs->dropped));
        json_object_set_new(o, "rounds", json_integer((json_int_t)gs->rounds));
        json_object_set_new(root, "gc", o);
    }
    tmp = xmalloc(strlen(w->cf->metrics_file) + 8);
    sprintf(tmp, "%s.tmp", w->cf->metrics_file);
    rc = json_dump_file(root, tmp, JSON_INDENT(1) | JSON_SORT_KEYS);
    if (rc != 0 || rename(tmp, w->cf->metrics_file) != 0) {
        log_warn("worker", "cannot write metrics_file %s: %s", w->cf->metrics_file,
                 strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    json_decref(root);
}

static void
on_metrics_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    write_metrics(arg);
}

/* --- life cycle ------------------------------------------------------------------------- */

/* claim_idle/4, between SETTLE_MIN_MS and SETTLE_MAX_MS. */
static int64_t
settle_interval_ms(const struct repl_conf *cf)
{
    int64_t ms = cf->claim_idle_ms / 4;

    return ms > SETTLE_MAX_MS ? SETTLE_MAX_MS : ms < SETTLE_MIN_MS ? SETTLE_MIN_MS : ms;
}

struct worker *
worker_create(struct event_base *evb, const struct repl_conf *cf)
{
    struct worker *w = xcalloc(1, sizeof(*w));
    struct queue_opts qo;
    size_t i;

    w->evb = evb;
    w->cf = cf;
    w->sites = sites_create(evb, cf, cf->concurrency);
    w->actx.evb = evb;
    w->actx.store = &w->sites->store;
    w->actx.transfer_timeout_ms = cf->transfer_timeout_ms;
    w->cap = (size_t)cf->batch + (size_t)cf->concurrency;
    if (RAND_bytes((unsigned char *)&w->rng, sizeof(w->rng)) != 1 || w->rng == 0) {
        w->rng = (uint64_t)timeutil_mono_us() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    }
    memset(&qo, 0, sizeof(qo));
    qo.host = cf->redis_host;
    qo.port = cf->redis_port;
    qo.site_id = cf->site_id;
    qo.command_timeout_ms = cf->command_timeout_ms;
    qo.reconnect_ms = REDIS_RETRY_MS;
    w->cq = queue_create(evb, &qo);
    w->npeers = cf->npeers;
    w->peers = xcalloc(cf->npeers, sizeof(*w->peers));
    for (i = 0; i < cf->npeers; i++) {
        struct rpeer *p = &w->peers[i];

        p->w = w;
        p->site = &w->sites->peers[i];
        snprintf(p->group, sizeof(p->group), "peer:%s", p->site->id);
        p->rq = queue_create(evb, &qo);
        p->phase = PP_GROUP;
        strcpy(p->cursor, "0");
        strcpy(p->claim_cursor, "0-0");
        p->retry_ev = evtimer_new(evb, on_peer_retry, p);
        p->lag_ms = -1;
        p->backlog = -1;
        p->pending = -1;
        TAILQ_INIT(&p->held);
        TAILQ_INIT(&p->ready);
    }
    w->settle = settle_create(evb, w->cq, &w->sites->store, settle_interval_ms(cf));
    w->repair = repair_create(evb, w->cq, w->sites, cf, settle_interval_ms(cf));
    w->wm = watermark_create(evb, w->cq, &w->sites->store, cf);
    w->gc = gc_create(evb, w->cq, w->sites, cf);
    w->claim_ev = event_new(evb, -1, EV_PERSIST, on_claim_tick, w);
    w->trim_ev = event_new(evb, -1, EV_PERSIST, on_trim_tick, w);
    w->metrics_ev = event_new(evb, -1, EV_PERSIST, on_metrics_tick, w);
    w->grace_ev = NULL;
    w->stopped_ev = NULL;
    return w;
}

void
worker_start(struct worker *w)
{
    size_t i;

    w->started = 1;
    for (i = 0; i < w->npeers; i++) {
        create_group(&w->peers[i]);
    }
    arm(w->claim_ev, w->cf->claim_idle_ms / 2 > 0 ? w->cf->claim_idle_ms / 2 : 1);
    arm(w->trim_ev, w->cf->trim_interval_ms);
    settle_start(w->settle);
    repair_start(w->repair);
    watermark_start(w->wm);
    gc_start(w->gc);
    if (w->cf->metrics_file != NULL) {
        arm(w->metrics_ev, METRICS_INTERVAL_MS);
        write_metrics(w);
    }
}

static void
on_stopped(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    (void)fd;
    (void)what;
    if (w->stopped_cb != NULL) {
        w->stopped_cb(w->stopped_arg);
    }
}

static void
check_stopped(struct worker *w)
{
    if (!w->stopping || w->stop_notified || w->destroying || w->inflight > 0 || w->redis_busy > 0) {
        return;
    }
    w->stop_notified = 1;
    if (w->grace_ev != NULL) {
        evtimer_del(w->grace_ev);
    }
    if (w->cf->metrics_file != NULL) {
        write_metrics(w);
    }
    event_active(w->stopped_ev, 0, 0);
}

static void
on_grace(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    size_t i;

    (void)fd;
    (void)what;
    for (i = 0; i < w->npeers; i++) {
        struct entry *e;

        TAILQ_FOREACH(e, &w->peers[i].held, held_link)
        {
            if (e->state == ES_APPLYING) {
                log_info("worker", "peer %s: abandoning bucket=%s key=%s entry=%s (left pending)",
                         w->peers[i].site->id, e->show_bucket, e->show_key, e->id);
                apply_cancel(e->apply);
            }
        }
    }
}

/* Drops entries that are not moving (READY, BACKOFF, REDIS_WAIT): they stay pending. */
static void
drop_idle_entries(struct worker *w)
{
    size_t i;

    for (i = 0; i < w->npeers; i++) {
        struct entry *e, *next;

        for (e = TAILQ_FIRST(&w->peers[i].held); e != NULL; e = next) {
            next = TAILQ_NEXT(e, held_link);
            if (e->state == ES_READY || e->state == ES_BACKOFF || e->state == ES_REDIS_WAIT) {
                entry_free(e);
            }
        }
    }
}

void
worker_stop(struct worker *w, int64_t grace_ms, worker_stopped_cb cb, void *arg)
{
    size_t i;

    if (w->stopping) {
        return;
    }
    w->stopping = 1;
    w->stopped_cb = cb;
    w->stopped_arg = arg;
    w->stopped_ev = event_new(w->evb, -1, 0, on_stopped, w);
    w->grace_ev = evtimer_new(w->evb, on_grace, w);
    evtimer_del(w->claim_ev);
    evtimer_del(w->trim_ev);
    evtimer_del(w->metrics_ev);
    settle_stop(w->settle);
    repair_stop(w->repair);
    watermark_stop(w->wm);
    gc_stop(w->gc);
    for (i = 0; i < w->npeers; i++) {
        evtimer_del(w->peers[i].retry_ev);
    }
    drop_idle_entries(w);
    log_info("worker", "stopping: %zu transfers in flight, %lld ms to finish", w->inflight,
             (long long)grace_ms);
    arm(w->grace_ev, grace_ms);
    check_stopped(w);
}

struct sites *
worker_sites(struct worker *w)
{
    return w->sites;
}

void
worker_rekey(struct worker *w)
{
    sites_rekey(w->sites, w->cf);
    repair_rekey(w->repair);
}

void
worker_destroy(struct worker *w)
{
    size_t i;

    if (w == NULL) {
        return;
    }
    if (!w->stopping) {
        worker_stop(w, 0, NULL, NULL);
    }
    /* cancelled applies report from their own events: let them */
    on_grace(-1, 0, w);
    while (w->inflight > 0) {
        event_base_loop(w->evb, EVLOOP_ONCE);
    }
    w->destroying = 1;
    queue_destroy(w->cq); /* XACK / XADD callbacks run now and free their entries */
    settle_destroy(w->settle);
    repair_destroy(w->repair);
    watermark_destroy(w->wm);
    gc_destroy(w->gc);
    for (i = 0; i < w->npeers; i++) {
        queue_destroy(w->peers[i].rq);
    }
    for (i = 0; i < w->npeers; i++) {
        struct rpeer *p = &w->peers[i];

        while (!TAILQ_EMPTY(&p->held)) {
            entry_free(TAILQ_FIRST(&p->held));
        }
        event_free(p->retry_ev);
    }
    trim_end(w);
    event_free(w->claim_ev);
    event_free(w->trim_ev);
    event_free(w->metrics_ev);
    if (w->grace_ev != NULL) {
        event_free(w->grace_ev);
    }
    if (w->stopped_ev != NULL) {
        event_free(w->stopped_ev);
    }
    sites_destroy(w->sites);
    free(w->peers);
    free(w);
}
