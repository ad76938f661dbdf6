/*
 * settle.c - settle the intents dead proxies left (settle.h).
 *
 *   tick --ZRANGEBYSCORE s3tee:intents -inf <now> LIMIT 0 50--> for each member, in turn:
 *     parse the JSON --delete: HGET <index> st (expect_stamp)--> HEAD /bucket/key at the store
 *     --200 put: GET ?tagging (its tags travel with it)--> queue_settle_intent --> next
 *   An intent that cannot be looked at now (store error, Redis error) is left for the next
 *   round; one whose JSON is unusable is left too, with a warning.
 */
#include "replicator/settle.h"

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
#include "queue/stamp.h"
#include "replicator/sites.h"
#include "signing/sigv4.h"
#include "signing/uri.h"

#define KEY_INTENTS "s3tee:intents"
#define ROUND_MAX "50" /* intents per round */

struct settle {
    struct event_base *evb;      /* loop (borrowed) */
    struct queue *q;             /* Redis (borrowed) */
    struct site *store;          /* the local store (borrowed) */
    int64_t interval_ms;         /* between rounds */
    struct event *tick_ev;       /* round timer (owned) */
    struct event *step_ev;       /* next intent, from the loop (owned) */
    struct pool round;           /* this round's members */
    struct slice *members;       /* (round pool) */
    size_t n, idx;               /* members, the one being settled */
    unsigned busy : 1;           /* a round is running */
    unsigned stopping : 1;       /* settle_stop() ran */
    /* the intent being settled */
    struct pool ip;              /* its strings */
    struct queue_settle qs;      /* what the script gets */
    const char *show;            /* bucket/key for logs (ip) */
    struct upstream_xfer *x;     /* HEAD in flight */
    int status;                  /* HEAD status, 0 none */
    int has_stamp;               /* HEAD carried x-amz-meta-s3tee-stamp */
    char stamp[STAMP_TEXT_MAX];  /* its value */
    char vv[VV_TEXT_MAX];        /* x-amz-meta-s3tee-vv */
    char etag[128];              /* ETag */
    int64_t size;                /* Content-Length, -1 unknown */
    char expect[STAMP_TEXT_MAX]; /* delete: the index's st before the HEAD */
    struct evbuffer *tagging;    /* GET ?tagging answer (owned, bounded) */
    int tag_status;              /* its status, 0 none */
};

static void
settle_arm(struct event *ev, int64_t ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(ev, &tv);
}

static void
settle_copy(char *dst, size_t cap, struct slice v)
{
    size_t n = v.len < cap - 1 ? v.len : cap - 1;

    memcpy(dst, v.ptr, n);
    dst[n] = '\0';
}

/* On to the next member, from the loop (never from inside a callback's caller). */
static void
settle_step(struct settle *s)
{
    pool_deinit(&s->ip);
    pool_init(&s->ip);
    s->idx++;
    if (s->stopping) {
        s->busy = 0;
    } else {
        event_active(s->step_ev, 0, 0);
    }
}

static void
on_settled(void *arg, const char *errstr, enum queue_settle_outcome out)
{
    struct settle *s = arg;
    static const char *const names[] = {"already settled", "lease held, later", "dropped",
                                        "recorded and logged"};

    if (s->stopping) {
        s->busy = 0;
        return;
    }
    if (errstr != NULL) {
        log_warn("settle", "intent %s: %s (left for the next round)", s->show, errstr);
    } else {
        log_info("settle", "intent %s %s: %s (store: %s%s%s)", mutation_op_name(s->qs.op),
                 s->show, names[out], s->qs.found ? "has it" : "no object",
                 s->qs.found && s->has_stamp ? ", stamp " : "",
                 s->qs.found && s->has_stamp ? s->stamp : "");
    }
    settle_step(s);
}

static void
run_script(struct settle *s)
{
    if (s->qs.found && s->qs.op == MUT_PUT) {
        s->qs.stamp = slice_cstr(s->stamp);
        s->qs.vv = slice_cstr(s->vv);
        s->qs.etag = slice_cstr(s->etag);
        s->qs.size = s->size;
    }
    s->qs.now_ms = timeutil_now_ms();
    if (queue_settle_intent(s->q, &s->qs, on_settled, s) != 0) {
        log_warn("settle", "intent %s: refused by the queue (left)", s->show);
        settle_step(s);
    }
}

/* HEAD at the store */

static size_t
head_read_body(void *arg, char *buf, size_t max)
{
    (void)arg;
    (void)buf;
    (void)max;
    return 0;
}

static void
head_on_header(void *arg, struct slice name, struct slice value)
{
    struct settle *s = arg;

    if (slice_eq_nocase(name, SLICE_LIT("x-amz-meta-s3tee-stamp"))) {
        settle_copy(s->stamp, sizeof(s->stamp), value);
        s->has_stamp = 1;
    } else if (slice_eq_nocase(name, SLICE_LIT("x-amz-meta-s3tee-vv"))) {
        settle_copy(s->vv, sizeof(s->vv), value);
    } else if (slice_eq_nocase(name, SLICE_LIT("etag"))) {
        settle_copy(s->etag, sizeof(s->etag), value);
    } else if (slice_eq_nocase(name, SLICE_LIT("content-length"))) {
        uint64_t v;

        s->size = slice_to_u64(value, &v) == 0 ? (int64_t)v : -1;
    }
}

static void
head_on_head(void *arg, int status)
{
    struct settle *s = arg;

    s->status = status;
}

static int
head_on_body(void *arg, const char *data, size_t len)
{
    (void)arg;
    (void)data;
    (void)len;
    return 0;
}

static void start_tagging(struct settle *s);

static void
head_on_done(void *arg, const char *errstr)
{
    struct settle *s = arg;
    struct stamp st;
    struct vv vv;

    s->x = NULL;
    if (errstr != NULL || (s->status != 200 && s->status != 404)) {
        log_warn("settle", "intent %s: HEAD at the local store: %s (left for the next round)",
                 s->show, errstr ? errstr : pool_printf(&s->ip, "status %d", s->status));
        settle_step(s);
        return;
    }
    s->qs.found = s->status == 200;
    if (s->qs.found && s->qs.op == MUT_PUT &&
        (!s->has_stamp || stamp_parse(slice_cstr(s->stamp), &st) != 0 ||
         vv_parse(slice_cstr(s->vv), &vv) != 0)) {
        /* written around the proxy, or not by this write: the write did not land */
        s->qs.found = 0;
    }
    if (s->qs.found && s->qs.op == MUT_PUT) {
        start_tagging(s); /* the put carries its tags to the peers */
        return;
    }
    run_script(s);
}

static const struct upstream_xfer_ops head_ops = {
    .read_body = head_read_body,
    .on_header = head_on_header,
    .on_head = head_on_head,
    .on_body = head_on_body,
    .on_done = head_on_done,
};

/* GET ?tagging at the store: the tag set the landed put stored */

/* XML text with the five entities and character references decoded, in the intent's pool. */
static struct slice
settle_xml_text(struct pool *p, struct slice in)
{
    static const struct {
        const char *ent;
        char ch;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    char *out = pool_alloc(p, in.len + 1);
    size_t r = 0, w = 0, i, k, cl;

    while (r < in.len) {
        if (in.ptr[r] == '&' &&
            (k = slice_xml_charref(slice_make(in.ptr + r, in.len - r), out + w, &cl)) != 0) {
            w += cl;
            r += k;
            continue;
        }
        if (in.ptr[r] == '&') {
            for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                size_t el = strlen(ents[i].ent);

                if (in.len - r >= el && memcmp(in.ptr + r, ents[i].ent, el) == 0) {
                    out[w++] = ents[i].ch;
                    r += el;
                    break;
                }
            }
            if (i < sizeof(ents) / sizeof(ents[0])) {
                continue;
            }
        }
        out[w++] = in.ptr[r++];
    }
    out[w] = '\0';
    return slice_make(out, w);
}

/* The text between OPEN and CLOSE after *POS in IN; moves *POS past CLOSE. */
static int
settle_xml_elem(struct slice in, const char *open, const char *close, size_t *pos,
                struct slice *out)
{
    const char *a = memmem(in.ptr + *pos, in.len - *pos, open, strlen(open)), *b;

    if (a == NULL) {
        return -1;
    }
    a += strlen(open);
    b = memmem(a, (size_t)(in.ptr + in.len - a), close, strlen(close));
    if (b == NULL) {
        return -1;
    }
    *out = slice_make(a, (size_t)(b - a));
    *pos = (size_t)(b - in.ptr) + strlen(close);
    return 0;
}

/* <Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag>... -> "k=v&..." URL-encoded, the
 * form the proxy records (its tags_from_xml). */
static struct slice
settle_tags(struct pool *p, struct slice xml)
{
    struct slice tag, k, v, acc = SLICE_LIT("");
    size_t pos = 0;

    while (settle_xml_elem(xml, "<Tag>", "</Tag>", &pos, &tag) == 0) {
        size_t tp = 0, tp2 = 0;
        const char *kv;

        if (settle_xml_elem(tag, "<Key>", "</Key>", &tp, &k) != 0) {
            continue;
        }
        if (settle_xml_elem(tag, "<Value>", "</Value>", &tp2, &v) != 0) {
            v = SLICE_LIT("");
        }
        kv = pool_printf(p, "%.*s%s%s=%s", SLICE_ARGS(acc), acc.len ? "&" : "",
                         uri_encode_pool(p, settle_xml_text(p, k), 0),
                         uri_encode_pool(p, settle_xml_text(p, v), 0));
        acc = slice_cstr(kv);
    }
    return acc;
}

static void
tag_on_head(void *arg, int status)
{
    struct settle *s = arg;

    s->tag_status = status;
}

static int
tag_on_body(void *arg, const char *data, size_t len)
{
    struct settle *s = arg;

    /* 10 tags of 128 + 256 characters, escaped: well under this */
    if (evbuffer_get_length(s->tagging) + len <= 256 * 1024) {
        evbuffer_add(s->tagging, data, len);
    }
    return 0;
}

static void
tag_on_header(void *arg, struct slice name, struct slice value)
{
    (void)arg;
    (void)name;
    (void)value;
}

static void
tag_on_done(void *arg, const char *errstr)
{
    struct settle *s = arg;
    size_t n = evbuffer_get_length(s->tagging);

    s->x = NULL;
    if (errstr != NULL || (s->tag_status != 200 && s->tag_status != 404)) {
        /* logged without its tags, the put would replicate without them: later */
        log_warn("settle", "intent %s: GET ?tagging at the local store: %s (left for the next "
                           "round)",
                 s->show, errstr ? errstr : pool_printf(&s->ip, "status %d", s->tag_status));
        settle_step(s);
        return;
    }
    if (s->tag_status == 404) {
        s->qs.found = 0; /* gone since the HEAD: a delete is on its way */
    } else {
        s->qs.tags =
            settle_tags(&s->ip, slice_make((const char *)evbuffer_pullup(s->tagging, -1), n));
    }
    run_script(s);
}

static const struct upstream_xfer_ops tag_ops = {
    .read_body = head_read_body,
    .on_header = tag_on_header,
    .on_head = tag_on_head,
    .on_body = tag_on_body,
    .on_done = tag_on_done,
};

static void
start_tagging(struct settle *s)
{
    struct sites_request rq;

    memset(&rq, 0, sizeof(rq));
    rq.method = "GET";
    rq.path = pool_printf(&s->ip, "/%s/%s", uri_encode_pool(&s->ip, s->qs.bucket, 0),
                          uri_encode_pool(&s->ip, s->qs.key, 1));
    rq.query = "tagging";
    rq.payload = SIGV4_EMPTY_SHA256;
    s->tag_status = 0;
    evbuffer_drain(s->tagging, evbuffer_get_length(s->tagging));
    s->x = sites_start(s->store, &s->ip, &rq, -1, &tag_ops, s);
    if (s->x == NULL) {
        log_warn("settle", "intent %s: cannot start a GET ?tagging at the local store", s->show);
        settle_step(s);
    }
}

static void
start_head(struct settle *s)
{
    struct sites_request rq;

    memset(&rq, 0, sizeof(rq));
    rq.method = "HEAD";
    rq.path = pool_printf(&s->ip, "/%s/%s", uri_encode_pool(&s->ip, s->qs.bucket, 0),
                          uri_encode_pool(&s->ip, s->qs.key, 1));
    rq.query = "";
    rq.payload = SIGV4_EMPTY_SHA256;
    s->status = 0;
    s->has_stamp = 0;
    s->stamp[0] = s->vv[0] = s->etag[0] = '\0';
    s->size = -1;
    s->x = sites_start(s->store, &s->ip, &rq, -1, &head_ops, s);
    if (s->x == NULL) {
        log_warn("settle", "intent %s: cannot start a HEAD at the local store", s->show);
        settle_step(s);
    }
}

static void
on_index_st(void *arg, const char *errstr, redisReply *r)
{
    struct settle *s = arg;

    if (s->stopping) {
        s->busy = 0;
        return;
    }
    if (errstr != NULL || r == NULL ||
        (r->type != REDIS_REPLY_NIL && r->type != REDIS_REPLY_STRING)) {
        log_warn("settle", "intent %s: reading the index: %s", s->show,
                 errstr ? errstr : "unexpected reply");
        settle_step(s);
        return;
    }
    if (r->type == REDIS_REPLY_STRING) {
        settle_copy(s->expect, sizeof(s->expect), slice_make(r->str, r->len));
    } else {
        s->expect[0] = '\0';
    }
    s->qs.expect_stamp = slice_cstr(s->expect);
    start_head(s);
}

/* A JSON string member of O, or NULL. */
static const char *
settle_jstr(json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

/* Parses member IDX into s->qs and starts its first step. */
static void
settle_one(struct settle *s)
{
    struct slice m = s->members[s->idx];
    json_t *o = json_loadb(m.ptr, m.len, 0, NULL);
    const char *op, *bucket, *key;
    struct slice dkey;

    memset(&s->qs, 0, sizeof(s->qs));
    s->qs.member = m;
    s->show = "?";
    op = o ? settle_jstr(o, "op") : NULL;
    bucket = o ? settle_jstr(o, "bucket") : NULL;
    key = o ? settle_jstr(o, "key") : NULL;
    if (op == NULL || bucket == NULL || key == NULL || bucket[0] == '\0' ||
        uri_decode_pool(&s->ip, slice_cstr(key), 0, &dkey) != 0 || dkey.len == 0 ||
        (strcmp(op, "put") != 0 && strcmp(op, "delete") != 0 && strcmp(op, "tags") != 0)) {
        log_warn("settle", "intent %.*s: not an intent s3tee wrote; left alone",
                 (int)(m.len > 300 ? 300 : m.len), m.ptr);
        json_decref(o);
        settle_step(s);
        return;
    }
    s->qs.op = strcmp(op, "put") == 0 ? MUT_PUT : strcmp(op, "delete") == 0 ? MUT_DELETE : MUT_TAGS;
    s->qs.bucket = slice_cstr(pool_strndup(&s->ip, bucket, strlen(bucket)));
    s->qs.key = dkey;
    s->qs.expect_stamp = SLICE_LIT("");
    s->show = pool_printf(&s->ip, "%s/%.200s", bucket, key);
    json_decref(o);
    if (s->qs.op == MUT_TAGS) {
        /* a tag change the proxy did not commit: resync carries tags; just forget it */
        run_script(s);
    } else if (s->qs.op == MUT_DELETE) {
        const char *idx = pool_printf(&s->ip, "s3tee:o:%.*s/", SLICE_ARGS(s->qs.bucket));
        size_t il = strlen(idx);
        char *k = pool_alloc(&s->ip, il + dkey.len);
        const char *argv[3];
        size_t len[3];

        memcpy(k, idx, il);
        memcpy(k + il, dkey.ptr, dkey.len);
        argv[0] = "HGET";
        argv[1] = k;
        argv[2] = "st";
        len[0] = 4;
        len[1] = il + dkey.len;
        len[2] = 2;
        if (queue_command_argv(s->q, 3, argv, len, on_index_st, s) != 0) {
            settle_step(s);
        }
    } else {
        start_head(s);
    }
}

static void
on_settle_step(evutil_socket_t fd, short what, void *arg)
{
    struct settle *s = arg;

    (void)fd;
    (void)what;
    if (s->stopping) {
        s->busy = 0;
        return;
    }
    if (s->idx >= s->n) {
        s->busy = 0;
        return;
    }
    settle_one(s);
}

static void
on_settle_range(void *arg, const char *errstr, redisReply *r)
{
    struct settle *s = arg;
    size_t i;

    if (s->stopping) {
        s->busy = 0;
        return;
    }
    if (errstr != NULL || r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (errstr != queue_err_unavailable) {
            log_warn("settle", "reading %s: %s", KEY_INTENTS, errstr ? errstr : "bad reply");
        }
        s->busy = 0;
        return;
    }
    pool_deinit(&s->round);
    pool_init(&s->round);
    s->n = 0;
    s->idx = 0;
    s->members = pool_alloc(&s->round, sizeof(*s->members) * (r->elements + 1));
    for (i = 0; i < r->elements; i++) {
        if (r->element[i]->type == REDIS_REPLY_STRING) {
            s->members[s->n++] =
                pool_slice_dup(&s->round, slice_make(r->element[i]->str, r->element[i]->len));
        }
    }
    if (s->n == 0) {
        s->busy = 0;
        return;
    }
    event_active(s->step_ev, 0, 0);
}

static void
on_settle_tick(evutil_socket_t fd, short what, void *arg)
{
    struct settle *s = arg;
    char now[24];
    const char *argv[7];
    size_t len[7], i;

    (void)fd;
    (void)what;
    if (s->stopping) {
        return;
    }
    settle_arm(s->tick_ev, s->interval_ms);
    if (s->busy || !queue_connected(s->q)) {
        return;
    }
    snprintf(now, sizeof(now), "%lld", (long long)timeutil_now_ms());
    argv[0] = "ZRANGEBYSCORE";
    argv[1] = KEY_INTENTS;
    argv[2] = "-inf";
    argv[3] = now;
    argv[4] = "LIMIT";
    argv[5] = "0";
    argv[6] = ROUND_MAX;
    for (i = 0; i < 7; i++) {
        len[i] = strlen(argv[i]);
    }
    s->busy = 1;
    if (queue_command_argv(s->q, 7, argv, len, on_settle_range, s) != 0) {
        s->busy = 0;
    }
}

struct settle *
settle_create(struct event_base *evb, struct queue *q, struct site *store, int64_t interval_ms)
{
    struct settle *s = xcalloc(1, sizeof(*s));

    s->evb = evb;
    s->q = q;
    s->store = store;
    s->interval_ms = interval_ms > 0 ? interval_ms : 1;
    s->tick_ev = evtimer_new(evb, on_settle_tick, s);
    s->step_ev = event_new(evb, -1, 0, on_settle_step, s);
    pool_init(&s->round);
    pool_init(&s->ip);
    s->tagging = evbuffer_new();
    return s;
}

void
settle_start(struct settle *s)
{
    settle_arm(s->tick_ev, 0);
}

void
settle_stop(struct settle *s)
{
    if (s == NULL || s->stopping) {
        return;
    }
    s->stopping = 1;
    evtimer_del(s->tick_ev);
    event_del(s->step_ev);
    if (s->x != NULL) {
        upstream_abort(s->x);
        s->x = NULL;
    }
}

void
settle_destroy(struct settle *s)
{
    if (s == NULL) {
        return;
    }
    settle_stop(s);
    event_free(s->tick_ev);
    event_free(s->step_ev);
    pool_deinit(&s->round);
    pool_deinit(&s->ip);
    evbuffer_free(s->tagging);
    free(s);
}
