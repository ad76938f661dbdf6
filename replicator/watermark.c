/* watermark.c - notices a Redis that lost acknowledged writes (see watermark.h). */
#include "replicator/watermark.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "common/log.h"
#include "common/pool.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "queue/queue.h"
#include "replicator/conf.h"
#include "replicator/rebuild.h"
#include "replicator/sites.h"

#define WM_MAX_BODY 4096 /* the store's copy is one small JSON object */
#define WM_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* One round: WM_INFO -> WM_GET (-> WM_BUCKET) -> [WM_MARK] -> WM_PUT -> WM_IDLE. */
enum wm_state { WM_IDLE = 0, WM_INFO, WM_GET, WM_BUCKET, WM_MARK, WM_PUT };

struct watermark {
    struct event_base *evb;
    struct queue *q;               /* the site's Redis (borrowed) */
    struct site *store;            /* the local store (borrowed) */
    const struct repl_conf *cf;    /* borrowed */
    struct event *tick;            /* round timer (owned) */
    enum wm_state state;
    int stopped;
    struct pool pool;              /* this round's strings; reset per round */
    struct upstream_xfer *x;       /* store request in flight, or NULL */
    int status;                    /* its HTTP status */
    struct evbuffer *body;         /* its response body, bounded (owned) */
    char put_body[256];            /* the JSON to store */
    size_t put_len, put_off;
    long long redis_added;         /* entries-added of s3tee:log now (0: no stream) */
    long long redis_last_ms;       /* ms part of its last-generated-id */
    long long stored_added;        /* the store's copy, -1 none */
    size_t marking;                /* peers whose mark is still in flight */
    int lost;                      /* this round found lost writes */
};

static void wm_round_end(struct watermark *wm);
static void wm_start_put(struct watermark *wm);

static const char *
wm_object_path(struct watermark *wm)
{
    return pool_printf(&wm->pool, "/%s/%s/redis-watermark.json", wm->cf->meta_bucket,
                       wm->cf->site_id);
}

/* --- store requests --------------------------------------------------------------------------- */

static size_t
wm_read_body(void *arg, char *buf, size_t max)
{
    struct watermark *wm = arg;
    size_t n = wm->put_len - wm->put_off;

    if (wm->state != WM_PUT) {
        return 0;
    }
    if (n > max) {
        n = max;
    }
    memcpy(buf, wm->put_body + wm->put_off, n);
    wm->put_off += n;
    return n;
}

static void
wm_on_header(void *arg, struct slice name, struct slice value)
{
    (void)arg;
    (void)name;
    (void)value;
}

static void
wm_on_head(void *arg, int status)
{
    struct watermark *wm = arg;

    wm->status = status;
}

static int
wm_on_body(void *arg, const char *data, size_t len)
{
    struct watermark *wm = arg;
    size_t have = evbuffer_get_length(wm->body);

    if (have < WM_MAX_BODY) {
        evbuffer_add(wm->body, data, len < WM_MAX_BODY - have ? len : WM_MAX_BODY - have);
    }
    return 0;
}

static void wm_on_store_done(void *arg, const char *errstr);

static const struct upstream_xfer_ops wm_ops = {
    .read_body = wm_read_body,
    .on_header = wm_on_header,
    .on_head = wm_on_head,
    .on_body = wm_on_body,
    .on_done = wm_on_store_done,
};

static int
wm_store_request(struct watermark *wm, const char *method, const char *path, const char *payload,
              int64_t body_len)
{
    struct sites_request rq;

    memset(&rq, 0, sizeof(rq));
    rq.method = method;
    rq.path = path;
    rq.query = "";
    rq.payload = payload;
    wm->status = 0;
    evbuffer_drain(wm->body, evbuffer_get_length(wm->body));
    wm->x = sites_start(wm->store, &wm->pool, &rq, body_len, &wm_ops, wm);
    return wm->x != NULL ? 0 : -1;
}

/* --- the round ------------------------------------------------------------------------------- */

static void
wm_on_marked(void *arg, const char *errstr, int64_t since_ms)
{
    struct watermark *wm = arg;

    (void)since_ms;
    if (wm->stopped) {
        return;
    }
    if (errstr != NULL) {
        log_warn("watermark", "could not mark a peer for resync after Redis lost writes: %s",
                 errstr);
        wm->lost = 0; /* keep the store's figure: the next round tries again */
    }
    if (--wm->marking == 0) {
        if (wm->lost) {
            wm_start_put(wm);
        } else {
            wm_round_end(wm);
        }
    }
}

static void
wm_mark_all(struct watermark *wm)
{
    char reason[200];
    size_t i;

    snprintf(reason, sizeof(reason),
             "this site's Redis lost acknowledged writes: its stream counts %lld, the store's "
             "copy of that count (at /%s) says %lld",
             wm->redis_added, wm->cf->meta_bucket, wm->stored_added);
    log_error("watermark", "ALARM %s; every peer is marked for resync (s3tee:rebuild:<peer>), "
                           "which trusts the stamps in the store: run s3tee resync --peer P "
                           "--bucket B for each",
              reason);
    wm->state = WM_MARK;
    wm->lost = 1;
    wm->marking = wm->cf->npeers;
    for (i = 0; i < wm->cf->npeers; i++) {
        /* the queue is not dropped: what Redis still has is worth delivering */
        if (rebuild_mark(wm->q, wm->cf->peers[i].id, wm->cf->site_id,
                         wm->redis_last_ms > 0 ? wm->redis_last_ms : 0, reason, 0, wm_on_marked,
                         wm) != 0) {
            wm_on_marked(wm, "redis unavailable", 0);
        }
    }
}

static void
wm_start_put(struct watermark *wm)
{
    int n = snprintf(wm->put_body, sizeof(wm->put_body),
                     "{\"site\":\"%s\",\"entries_added\":%lld,\"time_ms\":%lld}\n",
                     wm->cf->site_id, wm->redis_added, (long long)timeutil_now_ms());
    char sha[65];

    wm->put_len = (size_t)n;
    wm->put_off = 0;
    wm->state = WM_PUT;
    sigv4_sha256_hex(wm->put_body, wm->put_len, sha);
    if (wm_store_request(wm, "PUT", wm_object_path(wm), pool_strndup(&wm->pool, sha, 64),
                      (int64_t)wm->put_len) != 0) {
        wm_round_end(wm);
    }
}

/* The store's copy is in wm->body (status 200), absent (404) or unreadable. */
static void
wm_after_get(struct watermark *wm)
{
    size_t n = evbuffer_get_length(wm->body);
    const char *text = n ? (const char *)evbuffer_pullup(wm->body, (ev_ssize_t)n) : "";

    wm->stored_added = -1;
    if (wm->status == 200) {
        json_error_t je;
        json_t *o = json_loadb(text, n, 0, &je);
        json_t *v = o ? json_object_get(o, "entries_added") : NULL;

        if (json_is_integer(v)) {
            wm->stored_added = (long long)json_integer_value(v);
        } else {
            log_warn("watermark", "the store's copy /%s/%s/redis-watermark.json is not what "
                                  "s3tee writes; it is replaced",
                     wm->cf->meta_bucket, wm->cf->site_id);
        }
        json_decref(o);
    } else if (wm->status == 404 && memmem(text, n, "NoSuchBucket", 12) != NULL) {
        wm->state = WM_BUCKET;
        if (wm_store_request(wm, "PUT", pool_printf(&wm->pool, "/%s", wm->cf->meta_bucket),
                          WM_EMPTY_SHA256, 0) != 0) {
            wm_round_end(wm);
        }
        return;
    } else if (wm->status != 404) {
        log_warn("watermark", "reading /%s/%s/redis-watermark.json at the store: HTTP %d",
                 wm->cf->meta_bucket, wm->cf->site_id, wm->status);
        wm_round_end(wm);
        return;
    }
    if (wm->stored_added > wm->redis_added) {
        wm_mark_all(wm);
    } else if (wm->stored_added != wm->redis_added) {
        wm_start_put(wm);
    } else {
        wm_round_end(wm);
    }
}

static void
wm_on_store_done(void *arg, const char *errstr)
{
    struct watermark *wm = arg;

    wm->x = NULL;
    if (wm->stopped) {
        return;
    }
    if (errstr != NULL) {
        log_warn("watermark", "store request for /%s/%s/redis-watermark.json failed: %s",
                 wm->cf->meta_bucket, wm->cf->site_id, errstr);
        wm_round_end(wm);
        return;
    }
    switch (wm->state) {
    case WM_GET:
        wm_after_get(wm);
        break;
    case WM_BUCKET:
        if (wm->status / 100 != 2 && wm->status != 409) {
            log_warn("watermark", "creating bucket %s at the store: HTTP %d", wm->cf->meta_bucket,
                     wm->status);
            wm_round_end(wm);
        } else {
            wm_start_put(wm);
        }
        break;
    case WM_PUT:
        if (wm->status / 100 != 2) {
            log_warn("watermark", "writing /%s/%s/redis-watermark.json at the store: HTTP %d",
                     wm->cf->meta_bucket, wm->cf->site_id, wm->status);
        } else if (wm->lost) {
            log_info("watermark", "the store's copy now follows Redis again (%lld)",
                     wm->redis_added);
        }
        wm_round_end(wm);
        break;
    default:
        wm_round_end(wm);
        break;
    }
}

/* XINFO STREAM s3tee:log: a flat [name, value, ...] array. No stream yet: 0. */
static void
wm_on_info(void *arg, const char *errstr, redisReply *r)
{
    struct watermark *wm = arg;
    size_t i;
    int have = 0;

    if (wm->stopped) {
        return;
    }
    wm->redis_added = 0;
    wm->redis_last_ms = 0;
    if (errstr != NULL) {
        if (r == NULL || r->type != REDIS_REPLY_ERROR || strstr(r->str, "no such key") == NULL) {
            wm_round_end(wm); /* Redis unreachable: nothing to compare */
            return;
        }
        have = 1; /* no stream: Redis has no writes at all */
    } else if (r != NULL && r->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i + 1 < r->elements; i += 2) {
            const redisReply *k = r->element[i], *v = r->element[i + 1];

            if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS) {
                continue;
            }
            if (strcmp(k->str, "entries-added") == 0 && v->type == REDIS_REPLY_INTEGER) {
                wm->redis_added = v->integer;
                have = 1;
            } else if (strcmp(k->str, "last-generated-id") == 0 &&
                       (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS)) {
                wm->redis_last_ms = strtoll(v->str, NULL, 10);
            }
        }
    }
    if (!have) {
        log_warn("watermark", "XINFO STREAM s3tee:log has no entries-added (Redis 7 needed): "
                              "lost writes cannot be noticed");
        wm_round_end(wm);
        return;
    }
    wm->state = WM_GET;
    if (wm_store_request(wm, "GET", wm_object_path(wm), WM_EMPTY_SHA256, -1) != 0) {
        wm_round_end(wm);
    }
}

static void
wm_round_end(struct watermark *wm)
{
    wm->state = WM_IDLE;
    wm->lost = 0;
    pool_deinit(&wm->pool);
    pool_init(&wm->pool);
}

static void
wm_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct watermark *wm = arg;
    const char *argv[3] = {"XINFO", "STREAM", "s3tee:log"};
    size_t len[3] = {5, 6, 9};

    (void)fd;
    (void)what;
    if (wm->stopped || wm->state != WM_IDLE) {
        return; /* the last round is still running (a slow store) */
    }
    wm->state = WM_INFO;
    if (queue_command_argv(wm->q, 3, argv, len, wm_on_info, wm) != 0) {
        wm_round_end(wm);
    }
}

struct watermark *
watermark_create(struct event_base *evb, struct queue *q, struct site *store,
                 const struct repl_conf *cf)
{
    struct watermark *wm = xcalloc(1, sizeof(*wm));

    wm->evb = evb;
    wm->q = q;
    wm->store = store;
    wm->cf = cf;
    wm->body = evbuffer_new();
    wm->tick = event_new(evb, -1, EV_PERSIST, wm_on_tick, wm);
    pool_init(&wm->pool);
    return wm;
}

void
watermark_start(struct watermark *wm)
{
    struct timeval tv;

    tv.tv_sec = (time_t)(wm->cf->trim_interval_ms / 1000);
    tv.tv_usec = (suseconds_t)(wm->cf->trim_interval_ms % 1000) * 1000;
    event_add(wm->tick, &tv);
    event_active(wm->tick, 0, 0);
}

void
watermark_stop(struct watermark *wm)
{
    wm->stopped = 1;
    event_del(wm->tick);
    if (wm->x != NULL) {
        upstream_abort(wm->x);
        wm->x = NULL;
    }
}

void
watermark_destroy(struct watermark *wm)
{
    if (wm == NULL) {
        return;
    }
    event_free(wm->tick);
    evbuffer_free(wm->body);
    pool_deinit(&wm->pool);
    free(wm);
}
