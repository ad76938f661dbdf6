/*
 * repair.c - bring a store that fell behind its index back to the index's winner (repair.h).
 *
 *   tick --ZRANGEBYSCORE s3tee:repair -inf <now> LIMIT 0 20--> for each member, in turn:
 *     HGETALL index --> HEAD /bucket/key at the store --> compare
 *       consistent ----------------------------------------------------> ZREM, next
 *       behind --ALARM--> peer 1..N: repair write at this site's proxy --applied/stale--> ZREM
 *                              (a put is read from that peer's proxy)   --none has it--> later
 *   A key that cannot be looked at now (store or Redis error) stays for the next round.
 */
#include "replicator/repair.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "common/log.h"
#include "common/pool.h"
#include "common/timeutil.h"
#include "common/upstream.h"
#include "common/xalloc.h"
#include "queue/mutation.h"
#include "queue/queue.h"
#include "queue/stamp.h"
#include "replicator/apply.h"
#include "replicator/conf.h"
#include "replicator/sites.h"
#include "signing/creds.h"
#include "signing/sigv4.h"
#include "signing/uri.h"

#define RP_KEY_TRIES "s3tee:repair:tries" /* hash member -> rounds that found no source */
#define RP_KEY_DEAD "s3tee:dead"
#define RP_ROUND_MAX "20"                  /* keys per round */
#define RP_BACKOFF_MAX_MS (5 * 60 * 1000)  /* between two rounds of one key, at most */
#define RP_TAGS_MAX 16384

enum rp_phase {
    RP_IDLE = 0, /* between keys */
    RP_INDEX,    /* HGETALL in flight */
    RP_HEAD,     /* HEAD at the store in flight */
    RP_APPLY,    /* a repair write in flight */
    RP_REDIS,    /* the closing ZREM / ZADD / XADD in flight */
};

struct repair {
    struct event_base *evb;       /* loop (borrowed) */
    struct queue *q;              /* Redis (borrowed) */
    struct sites *sites;          /* store and peers (borrowed) */
    const struct repl_conf *cf;   /* settings, credentials (borrowed) */
    int64_t interval_ms;          /* between rounds */
    struct event *tick_ev;        /* round timer (owned) */
    struct event *step_ev;        /* next key, from the loop (owned) */
    struct site local;            /* this site's proxy; keyed with the source peer's site key */
    struct pool round;            /* this round's members */
    struct slice *members;        /* (round pool) */
    size_t n, idx;                /* members, the one being looked at */
    enum rp_phase phase;          /* what is in flight */
    unsigned busy : 1;            /* a round is running */
    unsigned stopping : 1;        /* repair_stop() ran */
    /* the key being looked at */
    struct pool kp;               /* its strings */
    struct slice member;          /* "<bucket>/<key>" (round pool) */
    struct slice bucket, key;     /* parts of member */
    char st[STAMP_TEXT_MAX];      /* the index's data stamp */
    char vv[VV_TEXT_MAX];         /* its vector */
    char etag[128];               /* its ETag */
    char tags[RP_TAGS_MAX];          /* its tag set */
    int64_t size;                 /* its size */
    int deleted;                  /* a tombstone */
    int status;                   /* HEAD status */
    int has_stamp;                /* HEAD carried x-amz-meta-s3tee-stamp */
    char store_st[STAMP_TEXT_MAX];/* its value */
    struct upstream_xfer *x;      /* HEAD in flight */
    struct mutation m;            /* the repair write (slices into this struct and kp) */
    struct apply_ctx actx;        /* source: the peer being tried */
    struct apply *a;              /* the write in flight */
    size_t peer;                  /* index of the peer being tried */
    const char *show;             /* bucket/key for logs (kp) */
};

static void
rp_arm(struct event *ev, int64_t ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(ev, &tv);
}

static void
rp_copy(char *dst, size_t cap, struct slice v)
{
    size_t n = v.len < cap - 1 ? v.len : cap - 1;

    memcpy(dst, v.ptr, n);
    dst[n] = '\0';
}

/* On to the next key, from the loop (never from inside a callback's caller). */
static void
rp_next(struct repair *r)
{
    pool_deinit(&r->kp);
    pool_init(&r->kp);
    r->phase = RP_IDLE;
    r->idx++;
    if (r->stopping) {
        r->busy = 0;
    } else {
        event_active(r->step_ev, 0, 0);
    }
}

static void
rp_on_closing(void *arg, const char *errstr, redisReply *reply)
{
    struct repair *r = arg;

    (void)reply;
    if (r->stopping) {
        r->busy = 0;
        return;
    }
    if (errstr != NULL) {
        log_warn("repair", "%s: updating %s: %s (looked at again next round)", r->show,
                 QUEUE_KEY_REPAIR, errstr);
    }
    rp_next(r);
}

/* The key is settled: out of the set, and its try count with it (two commands: a count
 * left behind by a crash only shortens a later backoff). */
static void
rp_forget(struct repair *r)
{
    const char *zrem[3] = {"ZREM", QUEUE_KEY_REPAIR, r->member.ptr};
    const char *hdel[3] = {"HDEL", RP_KEY_TRIES, r->member.ptr};
    size_t zl[3] = {4, strlen(QUEUE_KEY_REPAIR), r->member.len};
    size_t hl[3] = {4, strlen(RP_KEY_TRIES), r->member.len};

    r->phase = RP_REDIS;
    if (queue_command_argv(r->q, 3, zrem, zl, NULL, NULL) != 0 ||
        queue_command_argv(r->q, 3, hdel, hl, rp_on_closing, r) != 0) {
        rp_next(r);
    }
}

/* No source had the winner this round: count it, then later, or the dead-letter stream. */
static void
rp_on_tries(void *arg, const char *errstr, redisReply *reply)
{
    struct repair *r = arg;
    long long tries;
    int64_t backoff;
    char score[32];
    const char *argv[5];
    size_t len[5], i;

    if (r->stopping) {
        r->busy = 0;
        return;
    }
    if (errstr != NULL || reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        rp_next(r); /* due again next round */
        return;
    }
    tries = reply->integer;
    if (tries >= r->cf->max_attempts) {
        const char *x[18];
        size_t xl[18];
        char tr[24];

        log_error("repair", "bucket=%.*s key=%.*s at site %s: no site's store holds stamp %s "
                            "after %lld rounds; moved to %s (this write is lost unless a site "
                            "still has it: run s3tee resync)",
                  SLICE_ARGS(r->bucket), SLICE_ARGS(r->key), r->cf->site_id, r->st, tries,
                  RP_KEY_DEAD);
        snprintf(tr, sizeof(tr), "%lld", tries);
        x[0] = "XADD";
        x[1] = RP_KEY_DEAD;
        x[2] = "*";
        x[3] = "op";
        x[4] = r->deleted ? "delete" : "put";
        x[5] = "bucket";
        x[6] = r->bucket.ptr;
        x[7] = "key";
        x[8] = r->key.ptr;
        x[9] = "stamp";
        x[10] = r->st;
        x[11] = "peer";
        x[12] = "*";
        x[13] = "reason";
        x[14] = "repair: the local store lost the index's winner and no peer holds it";
        x[15] = "attempts";
        x[16] = tr;
        for (i = 0; i < 17; i++) {
            xl[i] = strlen(x[i]);
        }
        xl[6] = r->bucket.len;
        xl[8] = r->key.len;
        if (queue_command_argv(r->q, 17, x, xl, NULL, NULL) != 0) {
            rp_next(r);
            return;
        }
        rp_forget(r);
        return;
    }
    backoff = 1000;
    for (i = 1; i < (size_t)tries && backoff < RP_BACKOFF_MAX_MS; i++) {
        backoff *= 2;
    }
    if (backoff > RP_BACKOFF_MAX_MS) {
        backoff = RP_BACKOFF_MAX_MS;
    }
    snprintf(score, sizeof(score), "%lld", (long long)(timeutil_now_ms() + backoff));
    argv[0] = "ZADD";
    argv[1] = QUEUE_KEY_REPAIR;
    argv[2] = "XX";
    argv[3] = score;
    argv[4] = r->member.ptr;
    for (i = 0; i < 4; i++) {
        len[i] = strlen(argv[i]);
    }
    len[4] = r->member.len;
    log_warn("repair", "bucket=%.*s key=%.*s: no peer could give stamp %s yet (round %lld); "
                       "again in %lld ms",
             SLICE_ARGS(r->bucket), SLICE_ARGS(r->key), r->st, tries, (long long)backoff);
    if (queue_command_argv(r->q, 5, argv, len, rp_on_closing, r) != 0) {
        rp_next(r);
    }
}

static void
rp_later(struct repair *r)
{
    const char *argv[4] = {"HINCRBY", RP_KEY_TRIES, r->member.ptr, "1"};
    size_t len[4] = {7, strlen(RP_KEY_TRIES), r->member.len, 1};

    r->phase = RP_REDIS;
    if (queue_command_argv(r->q, 4, argv, len, rp_on_tries, r) != 0) {
        rp_next(r);
    }
}

/* ---- the repair write ------------------------------------------------------------------ */

static void rp_try_peer(struct repair *r);

static void
rp_on_applied(void *arg, const struct apply_result *res)
{
    struct repair *r = arg;
    const char *src = r->sites->peers[r->peer].id;

    r->a = NULL;
    if (res->outcome == APPLY_CANCELLED || r->stopping) {
        /* stopped, or its key went with a reload: the key stays in the set */
        pool_deinit(&r->kp);
        pool_init(&r->kp);
        r->phase = RP_IDLE;
        r->busy = 0;
        return;
    }
    switch (res->outcome) {
    case APPLY_APPLIED:
        log_warn("repair", "bucket=%.*s key=%.*s at site %s: %s stamp %s restored (read from "
                           "site %s)",
                 SLICE_ARGS(r->bucket), SLICE_ARGS(r->key), r->cf->site_id,
                 r->deleted ? "tombstone" : "object", r->st, src);
        rp_forget(r);
        return;
    case APPLY_STALE:
        /* this site's proxy has a newer stamp by now: that write carries the key */
        log_info("repair", "%s: a newer write landed meanwhile; nothing to repair", r->show);
        rp_forget(r);
        return;
    default:
        log_info("repair", "%s: site %s could not give stamp %s: %s %s", r->show, src, r->st,
                 apply_outcome_name(res->outcome), res->reason ? res->reason : "");
        r->peer++;
        rp_try_peer(r);
        return;
    }
}

/* The proxy here signs with the site key of the peer whose data it receives. */
static int
rp_key_local(struct repair *r, const char *peer_id)
{
    const struct creds_entry *sk = creds_find_site(r->cf->creds, slice_cstr(peer_id));

    if (sk == NULL) {
        return -1;
    }
    r->local.access_key = sk->access_key;
    r->local.secret = sk->secret;
    return 0;
}

static void
rp_try_peer(struct repair *r)
{
    struct site *src;

    if (r->peer >= r->sites->npeers) {
        rp_later(r);
        return;
    }
    src = &r->sites->peers[r->peer];
    if (rp_key_local(r, src->id) != 0) {
        log_error("repair", "%s: cannot restore from site %s: no 'site %s ...' key in %s for "
                            "this site's proxy",
                  r->show, src->id, src->id, r->cf->credentials_file);
        r->peer++;
        rp_try_peer(r);
        return;
    }
    r->actx.evb = r->evb;
    r->actx.store = src;
    r->actx.transfer_timeout_ms = r->cf->transfer_timeout_ms;
    r->actx.repair = 1;
    r->phase = RP_APPLY;
    r->a = apply_start(&r->actx, &r->local, &r->m, rp_on_applied, r);
}

static void
rp_restore(struct repair *r)
{
    log_error("repair", "ALARM bucket=%.*s key=%.*s at site %s: the store holds %s%s%s but the "
                        "index says %s %s (a write landed after a newer one); restoring it",
              SLICE_ARGS(r->bucket), SLICE_ARGS(r->key), r->cf->site_id,
              r->status == 404 ? "no object" : "stamp ", r->status == 404 ? "" : r->store_st,
              r->status != 404 && !r->has_stamp ? "(none)" : "",
              r->deleted ? "tombstone" : "object", r->st);
    if (r->local.up == NULL) {
        log_error("repair", "%s: set resync_proxy (this site's proxy) so the replicator can "
                            "restore it; looked at again later",
                  r->show);
        rp_later(r);
        return;
    }
    memset(&r->m, 0, sizeof(r->m));
    r->m.op = r->deleted ? MUT_DELETE : MUT_PUT;
    r->m.bucket = r->bucket;
    r->m.key = r->key;
    r->m.stamp = slice_cstr(r->st);
    r->m.vv = slice_cstr(r->vv);
    r->m.etag = r->deleted ? SLICE_LIT("") : slice_cstr(r->etag);
    r->m.size = r->deleted ? -1 : r->size;
    r->m.tags = r->deleted ? SLICE_LIT("") : slice_cstr(r->tags);
    r->m.parts = SLICE_LIT("");
    r->m.time_ms = timeutil_now_ms();
    r->peer = 0;
    rp_try_peer(r);
}

/* ---- compare ---------------------------------------------------------------------------- */

static void
rp_compare(struct repair *r)
{
    int cmp;

    if (r->deleted) {
        if (r->status == 404) {
            log_info("repair", "%s: consistent (tombstone, no object)", r->show);
            rp_forget(r);
            return;
        }
    } else if (r->status == 200 && r->has_stamp && strcmp(r->store_st, r->st) == 0) {
        log_info("repair", "%s: consistent (stamp %s)", r->show, r->st);
        rp_forget(r);
        return;
    }
    /* stamps order as text (16 hex digits, then the site), as the scripts compare them */
    cmp = r->status == 200 && r->has_stamp ? strcmp(r->store_st, r->st) : -1;
    if (cmp > 0) {
        /* a write newer than the index: its commit (or its intent's settling) indexes it */
        log_info("repair", "%s: the store is ahead of the index (%s > %s); left to its commit",
                 r->show, r->store_st, r->st);
        rp_forget(r);
        return;
    }
    rp_restore(r);
}

/* HEAD at the store */

static size_t
rp_head_read_body(void *arg, char *buf, size_t max)
{
    (void)arg;
    (void)buf;
    (void)max;
    return 0;
}

static void
rp_head_on_header(void *arg, struct slice name, struct slice value)
{
    struct repair *r = arg;

    if (slice_eq_nocase(name, SLICE_LIT("x-amz-meta-s3tee-stamp"))) {
        rp_copy(r->store_st, sizeof(r->store_st), value);
        r->has_stamp = 1;
    }
}

static void
rp_head_on_head(void *arg, int status)
{
    struct repair *r = arg;

    r->status = status;
}

static int
rp_head_on_body(void *arg, const char *data, size_t len)
{
    (void)arg;
    (void)data;
    (void)len;
    return 0;
}

static void
rp_head_on_done(void *arg, const char *errstr)
{
    struct repair *r = arg;

    r->x = NULL;
    if (errstr != NULL || (r->status != 200 && r->status != 404)) {
        log_warn("repair", "%s: HEAD at the local store: %s (looked at again next round)",
                 r->show, errstr ? errstr : pool_printf(&r->kp, "status %d", r->status));
        rp_next(r);
        return;
    }
    rp_compare(r);
}

static const struct upstream_xfer_ops rp_head_ops = {
    .read_body = rp_head_read_body,
    .on_header = rp_head_on_header,
    .on_head = rp_head_on_head,
    .on_body = rp_head_on_body,
    .on_done = rp_head_on_done,
};

static void
rp_start_head(struct repair *r)
{
    struct sites_request rq;

    memset(&rq, 0, sizeof(rq));
    rq.method = "HEAD";
    rq.path = pool_printf(&r->kp, "/%s/%s", uri_encode_pool(&r->kp, r->bucket, 0),
                          uri_encode_pool(&r->kp, r->key, 1));
    rq.query = "";
    rq.payload = SIGV4_EMPTY_SHA256;
    r->status = 0;
    r->has_stamp = 0;
    r->store_st[0] = '\0';
    r->phase = RP_HEAD;
    r->x = sites_start(&r->sites->store, &r->kp, &rq, -1, &rp_head_ops, r);
    if (r->x == NULL) {
        log_warn("repair", "%s: cannot start a HEAD at the local store", r->show);
        rp_next(r);
    }
}

static void
rp_on_index(void *arg, const char *errstr, redisReply *reply)
{
    struct repair *r = arg;
    size_t i;
    int have_st = 0;

    if (r->stopping) {
        r->busy = 0;
        return;
    }
    if (errstr != NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        log_warn("repair", "%s: reading the index: %s", r->show, errstr ? errstr : "bad reply");
        rp_next(r);
        return;
    }
    r->st[0] = r->vv[0] = r->etag[0] = r->tags[0] = '\0';
    r->size = -1;
    r->deleted = 0;
    for (i = 0; i + 1 < reply->elements; i += 2) {
        redisReply *f = reply->element[i], *v = reply->element[i + 1];
        struct slice fs, vs;
        uint64_t u;

        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            continue;
        }
        fs = slice_make(f->str, f->len);
        vs = slice_make(v->str, v->len);
        if (slice_eq(fs, SLICE_LIT("st"))) {
            rp_copy(r->st, sizeof(r->st), vs);
            have_st = vs.len > 0;
        } else if (slice_eq(fs, SLICE_LIT("vv"))) {
            rp_copy(r->vv, sizeof(r->vv), vs);
        } else if (slice_eq(fs, SLICE_LIT("etag"))) {
            rp_copy(r->etag, sizeof(r->etag), vs);
        } else if (slice_eq(fs, SLICE_LIT("tags"))) {
            rp_copy(r->tags, sizeof(r->tags), vs);
        } else if (slice_eq(fs, SLICE_LIT("size")) && slice_to_u64(vs, &u) == 0) {
            r->size = (int64_t)u;
        } else if (slice_eq(fs, SLICE_LIT("del"))) {
            r->deleted = slice_eq(vs, SLICE_LIT("1"));
        }
    }
    if (!have_st) {
        rp_forget(r); /* nothing indexed: nothing the store could be behind */
        return;
    }
    rp_start_head(r);
}

/* Starts on member IDX. */
static void
rp_one(struct repair *r)
{
    const char *slash, *argv[2];
    size_t len[2];
    char *k;

    r->member = r->members[r->idx];
    slash = memchr(r->member.ptr, '/', r->member.len);
    if (slash == NULL || slash == r->member.ptr || slash + 1 == r->member.ptr + r->member.len) {
        log_warn("repair", "member '%.*s' of %s is not bucket/key; removed",
                 (int)(r->member.len > 300 ? 300 : r->member.len), r->member.ptr,
                 QUEUE_KEY_REPAIR);
        r->show = "?";
        rp_forget(r);
        return;
    }
    r->bucket = pool_slice_dup(&r->kp, slice_make(r->member.ptr, (size_t)(slash - r->member.ptr)));
    r->key = pool_slice_dup(&r->kp, slice_make(slash + 1, (size_t)(r->member.ptr + r->member.len -
                                                                   slash - 1)));
    r->show = pool_printf(&r->kp, "bucket=%.*s key=%.*s", SLICE_ARGS(r->bucket),
                          (int)(r->key.len > 200 ? 200 : r->key.len), r->key.ptr);
    k = pool_alloc(&r->kp, 8 + r->member.len);
    memcpy(k, "s3tee:o:", 8);
    memcpy(k + 8, r->member.ptr, r->member.len);
    argv[0] = "HGETALL";
    argv[1] = k;
    len[0] = 7;
    len[1] = 8 + r->member.len;
    r->phase = RP_INDEX;
    if (queue_command_argv(r->q, 2, argv, len, rp_on_index, r) != 0) {
        rp_next(r);
    }
}

static void
rp_on_step(evutil_socket_t fd, short what, void *arg)
{
    struct repair *r = arg;

    (void)fd;
    (void)what;
    if (r->stopping || r->idx >= r->n) {
        r->busy = 0;
        return;
    }
    rp_one(r);
}

static void
rp_on_range(void *arg, const char *errstr, redisReply *reply)
{
    struct repair *r = arg;
    size_t i;

    if (r->stopping) {
        r->busy = 0;
        return;
    }
    if (errstr != NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        if (errstr != queue_err_unavailable) {
            log_warn("repair", "reading %s: %s", QUEUE_KEY_REPAIR, errstr ? errstr : "bad reply");
        }
        r->busy = 0;
        return;
    }
    pool_deinit(&r->round);
    pool_init(&r->round);
    r->n = 0;
    r->idx = 0;
    r->members = pool_alloc(&r->round, sizeof(*r->members) * (reply->elements + 1));
    for (i = 0; i < reply->elements; i++) {
        if (reply->element[i]->type == REDIS_REPLY_STRING) {
            /* NUL-terminated copies: argv entries for later commands */
            r->members[r->n++] = pool_slice_dup(
                &r->round, slice_make(reply->element[i]->str, reply->element[i]->len));
        }
    }
    if (r->n == 0) {
        r->busy = 0;
        return;
    }
    event_active(r->step_ev, 0, 0);
}

static void
rp_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct repair *r = arg;
    char now[24];
    const char *argv[7];
    size_t len[7], i;

    (void)fd;
    (void)what;
    if (r->stopping) {
        return;
    }
    rp_arm(r->tick_ev, r->interval_ms);
    if (r->busy || !queue_connected(r->q)) {
        return;
    }
    snprintf(now, sizeof(now), "%lld", (long long)timeutil_now_ms());
    argv[0] = "ZRANGEBYSCORE";
    argv[1] = QUEUE_KEY_REPAIR;
    argv[2] = "-inf";
    argv[3] = now;
    argv[4] = "LIMIT";
    argv[5] = "0";
    argv[6] = RP_ROUND_MAX;
    for (i = 0; i < 7; i++) {
        len[i] = strlen(argv[i]);
    }
    r->busy = 1;
    if (queue_command_argv(r->q, 7, argv, len, rp_on_range, r) != 0) {
        r->busy = 0;
    }
}

struct repair *
repair_create(struct event_base *evb, struct queue *q, struct sites *sites,
              const struct repl_conf *cf, int64_t interval_ms)
{
    struct repair *r = xcalloc(1, sizeof(*r));
    const char *url = cf->resync_proxy;
    const char *host = url != NULL ? strstr(url, "://") : NULL;

    r->evb = evb;
    r->q = q;
    r->sites = sites;
    r->cf = cf;
    r->interval_ms = interval_ms > 0 ? interval_ms : 1;
    r->tick_ev = evtimer_new(evb, rp_on_tick, r);
    r->step_ev = event_new(evb, -1, 0, rp_on_step, r);
    pool_init(&r->round);
    pool_init(&r->kp);
    if (host != NULL) {
        struct upstream_opts uo;

        memset(&uo, 0, sizeof(uo));
        uo.base_url = url;
        uo.tls_verify = cf->peer_tls_verify;
        uo.ca_file = cf->peer_ca_file;
        uo.connect_timeout_ms = 10000;
        uo.max_connections = 2;
        r->local.id = "local proxy";
        r->local.url = url;
        r->local.host = host + 3;
        r->local.region = cf->region;
        r->local.keys = &sites->keys;
        r->local.up = upstream_create(evb, &uo);
    }
    return r;
}

void
repair_start(struct repair *r)
{
    rp_arm(r->tick_ev, 0);
}

void
repair_rekey(struct repair *r)
{
    if (r != NULL && r->a != NULL && r->peer < r->sites->npeers &&
        rp_key_local(r, r->sites->peers[r->peer].id) != 0) {
        /* the key it signs with is gone: stop; the key stays in the set for a later round */
        apply_cancel(r->a);
    }
}

void
repair_stop(struct repair *r)
{
    if (r == NULL || r->stopping) {
        return;
    }
    r->stopping = 1;
    evtimer_del(r->tick_ev);
    event_del(r->step_ev);
    if (r->x != NULL) {
        upstream_abort(r->x);
        r->x = NULL;
    }
    if (r->a != NULL) {
        apply_cancel(r->a); /* reports from its own event: repair_destroy() waits for it */
    }
}

void
repair_destroy(struct repair *r)
{
    if (r == NULL) {
        return;
    }
    repair_stop(r);
    while (r->a != NULL) {
        event_base_loop(r->evb, EVLOOP_ONCE);
    }
    if (r->local.up != NULL) {
        upstream_destroy(r->local.up);
    }
    event_free(r->tick_ev);
    event_free(r->step_ev);
    pool_deinit(&r->round);
    pool_deinit(&r->kp);
    free(r);
}
