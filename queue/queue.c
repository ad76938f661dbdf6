/*
 * queue.c - the site's Redis as the proxy and the replicator see it: stamps, leases, the
 * index, intents, the mutation log and the conflict log. Each operation is one Lua script
 * (scripts.h) run over one rconn (rconn.h: timers, reconnect, EVALSHA/EVAL).
 *
 *   caller --queue_begin_local()--> args (keys, numbers, intent member) --rconn_eval()-->
 *   Redis --reply--> on_call_done(): parse --> caller's callback, exactly once
 */
#include "queue/queue.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "queue/rconn.h"
#include "queue/scripts.h"

const char queue_err_unavailable[] = "redis unavailable";
const char queue_err_timeout[] = "redis command timed out";
const char queue_err_shutdown[] = "queue shut down";
const char queue_err_reply[] = "redis error or unexpected reply";

enum script_id {
    SC_BEGIN_LOCAL = 0,
    SC_BEGIN_REPLICA,
    SC_RENEW_LEASE,
    SC_CHECK_LEASE,
    SC_COMMIT_LOCAL,
    SC_COMMIT_REPLICA,
    SC_RELEASE,
    SC_SETTLE_INTENT,
    SC_COUNT
};

static const char *const script_bodies[SC_COUNT] = {
    [SC_BEGIN_LOCAL] = script_begin_local,
    [SC_BEGIN_REPLICA] = script_begin_replica,
    [SC_RENEW_LEASE] = script_renew_lease,
    [SC_CHECK_LEASE] = script_check_lease,
    [SC_COMMIT_LOCAL] = script_commit_local,
    [SC_COMMIT_REPLICA] = script_commit_replica,
    [SC_RELEASE] = script_release,
    [SC_SETTLE_INTENT] = script_settle_intent,
};

#define KEY_HLC "s3tee:hlc"
#define KEY_INTENTS "s3tee:intents"
#define KEY_LOG "s3tee:log"
#define KEY_CONFLICTS "s3tee:conflicts"
#define KEY_REPAIR QUEUE_KEY_REPAIR
#define KEY_OPEN QUEUE_KEY_OPEN

struct queue {
    struct rconn *rc;                /* the connection (owned) */
    char site[STAMP_SITE_MAX + 1];   /* this site's id */
};

enum call_kind { CALL_BEGIN, CALL_CHECK, CALL_DONE, CALL_RAW, CALL_SETTLE };

/* One pending operation: which callback to call and how to read the reply. */
struct call {
    enum call_kind kind; /* reply shape */
    union {
        queue_begin_cb begin;
        queue_check_cb check;
        queue_done_cb done;
        queue_raw_cb raw;
        queue_settle_cb settle;
    } cb;                /* the caller's callback (may be NULL) */
    void *arg;           /* for it */
    const char *what;    /* operation name, for logs */
};

/* A growing byte buffer for keys and the intent member. */
struct buf {
    char *p;    /* bytes (owned) */
    size_t len; /* used */
    size_t cap; /* allocated */
};

static void
buf_add(struct buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    if (n > 0) {
        memcpy(b->p + b->len, p, n);
    }
    b->len += n;
    b->p[b->len] = '\0';
}

static void
buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* "s3tee:<kind>:<bucket>/<key>" (binary-safe) into B, from offset 0. */
static void
object_key(struct buf *b, const char *prefix, struct slice bucket, struct slice key)
{
    b->len = 0;
    buf_str(b, prefix);
    buf_add(b, bucket.ptr, bucket.len);
    buf_add(b, "/", 1);
    buf_add(b, key.ptr, key.len);
}

/* A JSON string of S: quotes, backslashes and bytes outside printable ASCII as \u00XX. */
static void
json_string(struct buf *b, struct slice s)
{
    size_t i;

    buf_add(b, "\"", 1);
    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        char esc[8];

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            buf_add(b, esc, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            buf_add(b, esc, 6);
        } else {
            buf_add(b, s.ptr + i, 1);
        }
    }
    buf_add(b, "\"", 1);
}

/* S3 URI encoding with '/' kept (signing/uri.h's uri_encode(keep_slash=1) decodes it). */
static void
uri_encoded(struct buf *b, struct slice s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i;

    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            buf_add(b, s.ptr + i, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};

            buf_add(b, e, 3);
        }
    }
}

/* The intent member (queue.h): the same bytes at begin, commit and release. */
static void
intent_member(struct buf *b, const struct queue *q, const struct queue_write *w)
{
    b->len = 0;
    buf_str(b, "{\"site\":");
    json_string(b, slice_cstr(q->site));
    buf_str(b, ",\"holder\":");
    json_string(b, slice_cstr(w->holder));
    buf_str(b, ",\"op\":");
    json_string(b, slice_cstr(mutation_op_name(w->op)));
    buf_str(b, ",\"bucket\":");
    json_string(b, w->bucket);
    buf_str(b, ",\"key\":\"");
    uri_encoded(b, w->key);
    buf_str(b, "\"}");
}

static int
write_valid(const struct queue_write *w)
{
    return w != NULL && w->bucket.len > 0 && w->bucket.ptr != NULL && w->key.len > 0 &&
           w->key.ptr != NULL && w->holder != NULL && w->holder[0] != '\0' &&
           (unsigned)w->op <= MUT_TAGS;
}

/* Copies a reply string into OUT (CAP bytes); -1 when it does not fit. */
static int
copy_str(const redisReply *r, char *out, size_t cap)
{
    if (r->type != REDIS_REPLY_STRING || r->len >= cap) {
        return -1;
    }
    memcpy(out, r->str, r->len);
    out[r->len] = '\0';
    return 0;
}

/* begin_* reply: { verdict, stamp, new_vv, exists, st, vv, del, etag, size, tst, tags }. */
static int
parse_begin(const redisReply *r, struct queue_begin_result *res)
{
    static const char *const verdicts[] = {"GO", "BUSY", "STALE", "FUTURE"};
    char num[24], del[4];
    size_t i;

    memset(res, 0, sizeof(*res));
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 11) {
        return -1;
    }
    for (i = 0; i < 11; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING) {
            return -1;
        }
    }
    for (i = 0; i < 4; i++) {
        if (strcmp(r->element[0]->str, verdicts[i]) == 0) {
            break;
        }
    }
    if (i == 4 || copy_str(r->element[1], res->stamp, sizeof(res->stamp)) != 0 ||
        copy_str(r->element[2], res->vv, sizeof(res->vv)) != 0 ||
        copy_str(r->element[4], res->cur.stamp, sizeof(res->cur.stamp)) != 0 ||
        copy_str(r->element[5], res->cur.vv, sizeof(res->cur.vv)) != 0 ||
        copy_str(r->element[6], del, sizeof(del)) != 0 ||
        copy_str(r->element[8], num, sizeof(num)) != 0 ||
        copy_str(r->element[9], res->cur.tag_stamp, sizeof(res->cur.tag_stamp)) != 0) {
        return -1;
    }
    res->verdict = (enum queue_verdict)i;
    res->cur.exists = strcmp(r->element[3]->str, "1") == 0;
    res->cur.tags = slice_make(r->element[10]->str, (size_t)r->element[10]->len);
    res->cur.deleted = strcmp(del, "1") == 0;
    if (copy_str(r->element[7], res->cur.etag, sizeof(res->cur.etag)) != 0) {
        /* a store's ETag longer than we keep: kept cut (it only feeds the conflict log) */
        memcpy(res->cur.etag, r->element[7]->str, sizeof(res->cur.etag) - 1);
        res->cur.etag[sizeof(res->cur.etag) - 1] = '\0';
    }
    res->cur.size = -1;
    if (num[0] != '\0') {
        char *end;
        long long v = strtoll(num, &end, 10);

        if (*end != '\0' || v < -1) {
            return -1;
        }
        res->cur.size = v;
    }
    return 0;
}

/* settle_intent reply: GONE | BUSY | DROPPED | LOGGED -> outcome, or -1. */
static int
parse_settle(const redisReply *r)
{
    static const char *const names[] = {"GONE", "BUSY", "DROPPED", "LOGGED"};
    int i;

    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS) {
        return -1;
    }
    for (i = 0; i < 4; i++) {
        if (strcmp(r->str, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

static void
on_call_done(void *arg, const char *errstr, struct redisReply *reply)
{
    struct call *c = arg;
    struct queue_begin_result res;
    int held = 0, outcome = 0;

    if (errstr == NULL) {
        switch (c->kind) {
        case CALL_BEGIN:
            if (parse_begin(reply, &res) != 0) {
                errstr = queue_err_reply;
            }
            break;
        case CALL_CHECK:
            if (reply->type != REDIS_REPLY_INTEGER) {
                errstr = queue_err_reply;
            }
            held = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
            break;
        case CALL_SETTLE:
            outcome = parse_settle(reply);
            if (outcome < 0) {
                errstr = queue_err_reply;
            }
            break;
        case CALL_DONE:
        case CALL_RAW:
            break;
        }
    }
    if (errstr == queue_err_reply && c->kind != CALL_RAW) {
        log_warn("queue", "%s: %s%s%.*s", c->what, errstr, reply ? ": " : "",
                 reply && reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 0,
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    }
    switch (c->kind) {
    case CALL_BEGIN:
        if (c->cb.begin != NULL) {
            c->cb.begin(c->arg, errstr, errstr ? NULL : &res);
        }
        break;
    case CALL_CHECK:
        if (c->cb.check != NULL) {
            c->cb.check(c->arg, errstr, errstr ? 0 : held);
        }
        break;
    case CALL_DONE:
        if (c->cb.done != NULL) {
            c->cb.done(c->arg, errstr);
        }
        break;
    case CALL_RAW:
        if (c->cb.raw != NULL) {
            c->cb.raw(c->arg, errstr, reply);
        }
        break;
    case CALL_SETTLE:
        if (c->cb.settle != NULL) {
            c->cb.settle(c->arg, errstr, errstr ? QUEUE_SETTLE_GONE
                                                : (enum queue_settle_outcome)outcome);
        }
        break;
    }
    free(c);
}

static struct call *
call_new(enum call_kind kind, void *arg, const char *what)
{
    struct call *c = xcalloc(1, sizeof(*c));

    c->kind = kind;
    c->arg = arg;
    c->what = what;
    return c;
}

/* Runs script ID with ARGS; takes C (freed here when the call is refused). */
static int
run(struct queue *q, enum script_id id, int nkeys, int nargs, const char **args,
    const size_t *lens, struct call *c)
{
    if (rconn_eval(q->rc, (size_t)id, nkeys, nargs, args, lens, on_call_done, c) != 0) {
        free(c);
        return -1;
    }
    return 0;
}

struct queue *
queue_create(struct event_base *evb, const struct queue_opts *o)
{
    struct queue *q;
    struct rconn_opts ro;
    size_t sl = o->site_id ? strlen(o->site_id) : 0;

    if (evb == NULL || !stamp_site_valid(slice_make(o->site_id, sl))) {
        log_error("queue", "site id '%s' is not a valid site id", o->site_id ? o->site_id : "");
        return NULL;
    }
    q = xcalloc(1, sizeof(*q));
    memcpy(q->site, o->site_id, sl + 1);
    memset(&ro, 0, sizeof(ro));
    ro.host = o->host;
    ro.port = o->port;
    ro.command_timeout_ms = o->command_timeout_ms;
    ro.reconnect_ms = o->reconnect_ms;
    ro.scripts = script_bodies;
    ro.nscripts = SC_COUNT;
    q->rc = rconn_create(evb, &ro);
    return q;
}

void
queue_destroy(struct queue *q)
{
    if (q == NULL) {
        return;
    }
    rconn_destroy(q->rc); /* may finish later if a callback is on the stack; needs no Q */
    free(q);
}

int
queue_connected(const struct queue *q)
{
    return q != NULL && rconn_connected(q->rc);
}

int
queue_begin_local(struct queue *q, const struct queue_write *w, queue_begin_cb cb, void *arg)
{
    struct buf idx = {0}, lease = {0}, member = {0};
    char now[24], lms[24], score[24];
    const char *a[11];
    size_t l[11];
    struct call *c;
    int rv;

    if (q == NULL || !write_valid(w) || w->now_ms < 0 || w->lease_ms <= 0 ||
        w->intent_ttl_ms < 0) {
        return -1;
    }
    object_key(&idx, "s3tee:o:", w->bucket, w->key);
    object_key(&lease, "s3tee:l:", w->bucket, w->key);
    intent_member(&member, q, w);
    snprintf(now, sizeof(now), "%" PRId64, w->now_ms);
    snprintf(lms, sizeof(lms), "%" PRId64, w->lease_ms);
    snprintf(score, sizeof(score), "%" PRId64, w->now_ms + w->intent_ttl_ms);
    a[0] = KEY_HLC;
    a[1] = idx.p;
    a[2] = lease.p;
    a[3] = KEY_INTENTS;
    a[4] = KEY_OPEN;
    a[5] = now;
    a[6] = q->site;
    a[7] = w->holder;
    a[8] = lms;
    a[9] = score;
    a[10] = member.p;
    l[1] = idx.len;
    l[2] = lease.len;
    l[10] = member.len;
    l[0] = strlen(a[0]);
    l[3] = strlen(a[3]);
    l[4] = strlen(a[4]);
    l[5] = strlen(a[5]);
    l[6] = strlen(a[6]);
    l[7] = strlen(a[7]);
    l[8] = strlen(a[8]);
    l[9] = strlen(a[9]);
    c = call_new(CALL_BEGIN, arg, "begin_local");
    c->cb.begin = cb;
    rv = run(q, SC_BEGIN_LOCAL, 5, 11, a, l, c);
    free(idx.p);
    free(lease.p);
    free(member.p);
    return rv;
}

int
queue_begin_replica(struct queue *q, const struct queue_write *w, struct slice stamp,
                    int64_t max_offset_ms, queue_begin_cb cb, void *arg)
{
    struct buf idx = {0}, lease = {0};
    char now[24], lms[24], off[24];
    const char *a[9];
    size_t l[9], i;
    struct stamp st;
    struct call *c;
    int rv;

    if (q == NULL || !write_valid(w) || w->now_ms < 0 || w->lease_ms <= 0 ||
        max_offset_ms < 0 || stamp.len >= STAMP_TEXT_MAX || stamp_parse(stamp, &st) != 0) {
        return -1;
    }
    object_key(&idx, "s3tee:o:", w->bucket, w->key);
    object_key(&lease, "s3tee:l:", w->bucket, w->key);
    snprintf(now, sizeof(now), "%" PRId64, w->now_ms);
    snprintf(lms, sizeof(lms), "%" PRId64, w->lease_ms);
    snprintf(off, sizeof(off), "%" PRId64, max_offset_ms);
    a[0] = KEY_HLC;
    a[1] = idx.p;
    a[2] = lease.p;
    a[3] = now;
    a[4] = w->holder;
    a[5] = lms;
    a[6] = stamp.ptr;
    a[7] = off;
    a[8] = w->op == MUT_TAGS ? "tst" : w->repair ? "st=" : "st";
    for (i = 0; i < 9; i++) {
        l[i] = strlen(a[i]);
    }
    l[1] = idx.len;
    l[2] = lease.len;
    l[6] = stamp.len;
    c = call_new(CALL_BEGIN, arg, "begin_replica");
    c->cb.begin = cb;
    rv = run(q, SC_BEGIN_REPLICA, 3, 9, a, l, c);
    free(idx.p);
    free(lease.p);
    return rv;
}

/* Shared by renew (ARGV: holder, lease_ms) and check (ARGV: holder, margin_ms). */
static int
lease_call(struct queue *q, const struct queue_write *w, enum script_id id, int64_t n,
           queue_check_cb cb, void *arg, const char *what)
{
    struct buf lease = {0};
    char num[24];
    const char *a[3];
    size_t l[3];
    struct call *c;
    int rv;

    if (q == NULL || !write_valid(w) || n < 0) {
        return -1;
    }
    object_key(&lease, "s3tee:l:", w->bucket, w->key);
    snprintf(num, sizeof(num), "%" PRId64, n);
    a[0] = lease.p;
    a[1] = w->holder;
    a[2] = num;
    l[0] = lease.len;
    l[1] = strlen(a[1]);
    l[2] = strlen(a[2]);
    c = call_new(CALL_CHECK, arg, what);
    c->cb.check = cb;
    rv = run(q, id, 1, 3, a, l, c);
    free(lease.p);
    return rv;
}

int
queue_renew_lease(struct queue *q, const struct queue_write *w, queue_check_cb cb, void *arg)
{
    if (w == NULL || w->lease_ms <= 0) {
        return -1;
    }
    return lease_call(q, w, SC_RENEW_LEASE, w->lease_ms, cb, arg, "renew_lease");
}

int
queue_check_lease(struct queue *q, const struct queue_write *w, int64_t margin_ms,
                  queue_check_cb cb, void *arg)
{
    return lease_call(q, w, SC_CHECK_LEASE, margin_ms, cb, arg, "check_lease");
}

/* The mutation must name the write's object and carry well-formed stamp and vector. */
static int
mutation_valid(const struct queue_write *w, const struct mutation *m)
{
    struct stamp st;
    struct vv vv;

    return m != NULL && (unsigned)m->op <= MUT_TAGS && slice_eq(m->bucket, w->bucket) &&
           slice_eq(m->key, w->key) && stamp_parse(m->stamp, &st) == 0 &&
           vv_parse(m->vv, &vv) == 0;
}

/* commit_local and commit_replica: NKEYS keys, FIXED leading ARGV, then M's pairs. */
static int
commit_call(struct queue *q, enum script_id id, int nkeys, const char **fixed, const size_t *flen,
            int nfixed, const struct mutation *m, struct call *c)
{
    const char *a[8 + 2 * MUTATION_NFIELDS];
    size_t l[8 + 2 * MUTATION_NFIELDS];
    char scratch[64];
    size_t n;

    memcpy(a, fixed, (size_t)nfixed * sizeof(*a));
    memcpy(l, flen, (size_t)nfixed * sizeof(*l));
    n = mutation_encode(m, a + nfixed, l + nfixed, scratch);
    return run(q, id, nkeys, nfixed + 2 * (int)n, a, l, c);
}

int
queue_commit_local(struct queue *q, const struct queue_write *w, const struct mutation *m,
                   queue_done_cb cb, void *arg)
{
    struct buf idx = {0}, lease = {0}, member = {0};
    const char *a[8];
    size_t l[8];
    struct call *c;
    int rv;

    if (q == NULL || !write_valid(w) || !mutation_valid(w, m)) {
        return -1;
    }
    object_key(&idx, "s3tee:o:", w->bucket, w->key);
    object_key(&lease, "s3tee:l:", w->bucket, w->key);
    intent_member(&member, q, w);
    a[0] = idx.p;
    a[1] = lease.p;
    a[2] = KEY_INTENTS;
    a[3] = KEY_LOG;
    a[4] = KEY_REPAIR;
    a[5] = KEY_OPEN;
    a[6] = w->holder;
    a[7] = member.p;
    l[0] = idx.len;
    l[1] = lease.len;
    l[2] = strlen(a[2]);
    l[3] = strlen(a[3]);
    l[4] = strlen(a[4]);
    l[5] = strlen(a[5]);
    l[6] = strlen(a[6]);
    l[7] = member.len;
    c = call_new(CALL_DONE, arg, "commit_local");
    c->cb.done = cb;
    rv = commit_call(q, SC_COMMIT_LOCAL, 6, a, l, 8, m, c);
    free(idx.p);
    free(lease.p);
    free(member.p);
    return rv;
}

int
queue_commit_replica(struct queue *q, const struct queue_write *w, const struct mutation *m,
                     queue_done_cb cb, void *arg)
{
    struct buf idx = {0}, lease = {0};
    const char *a[4];
    size_t l[4];
    struct call *c;
    int rv;

    if (q == NULL || !write_valid(w) || !mutation_valid(w, m)) {
        return -1;
    }
    object_key(&idx, "s3tee:o:", w->bucket, w->key);
    object_key(&lease, "s3tee:l:", w->bucket, w->key);
    a[0] = idx.p;
    a[1] = lease.p;
    a[2] = KEY_REPAIR;
    a[3] = w->holder;
    l[0] = idx.len;
    l[1] = lease.len;
    l[2] = strlen(a[2]);
    l[3] = strlen(a[3]);
    c = call_new(CALL_DONE, arg, "commit_replica");
    c->cb.done = cb;
    rv = commit_call(q, SC_COMMIT_REPLICA, 3, a, l, 4, m, c);
    free(idx.p);
    free(lease.p);
    return rv;
}

int
queue_release(struct queue *q, const struct queue_write *w, queue_done_cb cb, void *arg)
{
    struct buf lease = {0}, member = {0};
    const char *a[5];
    size_t l[5];
    struct call *c;
    int rv;

    if (q == NULL || !write_valid(w)) {
        return -1;
    }
    object_key(&lease, "s3tee:l:", w->bucket, w->key);
    intent_member(&member, q, w);
    a[0] = lease.p;
    a[1] = KEY_INTENTS;
    a[2] = KEY_OPEN;
    a[3] = w->holder;
    a[4] = member.p;
    l[0] = lease.len;
    l[1] = strlen(a[1]);
    l[2] = strlen(a[2]);
    l[3] = strlen(a[3]);
    l[4] = member.len;
    c = call_new(CALL_DONE, arg, "release");
    c->cb.done = cb;
    rv = run(q, SC_RELEASE, 3, 5, a, l, c);
    free(lease.p);
    free(member.p);
    return rv;
}

/* A slice as an argument: NULL pointers become "" (hiredis copies with memcpy). */
static void
arg_slice(const char **a, size_t *l, struct slice s)
{
    *a = s.ptr ? s.ptr : "";
    *l = s.ptr ? s.len : 0;
}

int
queue_settle_intent(struct queue *q, const struct queue_settle *s, queue_settle_cb cb, void *arg)
{
    struct buf idx = {0}, lease = {0};
    char now[24], size[24];
    const char *a[20];
    size_t l[20], i;
    struct stamp st;
    struct vv vv;
    struct call *c;
    int put = s != NULL && s->found && s->op == MUT_PUT, rv;

    if (q == NULL || s == NULL || s->member.len == 0 || s->bucket.len == 0 ||
        s->key.len == 0 || (unsigned)s->op > MUT_TAGS || s->now_ms < 0 ||
        (put && (stamp_parse(s->stamp, &st) != 0 || vv_parse(s->vv, &vv) != 0))) {
        return -1;
    }
    object_key(&idx, "s3tee:o:", s->bucket, s->key);
    object_key(&lease, "s3tee:l:", s->bucket, s->key);
    snprintf(now, sizeof(now), "%" PRId64, s->now_ms);
    snprintf(size, sizeof(size), "%" PRId64, put ? s->size : -1);
    a[0] = idx.p;
    a[1] = lease.p;
    a[2] = KEY_INTENTS;
    a[3] = KEY_LOG;
    a[4] = KEY_HLC;
    a[5] = KEY_REPAIR;
    a[6] = KEY_OPEN;
    arg_slice(&a[7], &l[7], s->member);
    a[8] = now;
    a[9] = q->site;
    a[10] = mutation_op_name(s->op);
    arg_slice(&a[11], &l[11], s->bucket);
    arg_slice(&a[12], &l[12], s->key);
    arg_slice(&a[13], &l[13], s->expect_stamp);
    a[14] = s->found ? "1" : "0";
    arg_slice(&a[15], &l[15], put ? s->stamp : SLICE_LIT(""));
    arg_slice(&a[16], &l[16], put ? s->vv : SLICE_LIT(""));
    arg_slice(&a[17], &l[17], put ? s->etag : SLICE_LIT(""));
    a[18] = size;
    arg_slice(&a[19], &l[19], put ? s->tags : SLICE_LIT(""));
    for (i = 0; i < 19; i++) {
        if (i < 7 || i == 8 || i == 9 || i == 10 || i == 14 || i == 18) {
            l[i] = strlen(a[i]);
        }
    }
    l[0] = idx.len;
    l[1] = lease.len;
    c = call_new(CALL_SETTLE, arg, "settle_intent");
    c->cb.settle = cb;
    rv = run(q, SC_SETTLE_INTENT, 7, 20, a, l, c);
    free(idx.p);
    free(lease.p);
    return rv;
}

int
queue_log_conflict(struct queue *q, const struct queue_conflict *cf, queue_done_cb cb, void *arg)
{
    static const char *const names[] = {"bucket",      "key",       "winner",  "loser",
                                        "winner_etag", "loser_etag", "loser_size", "kept_at",
                                        "time_ms"};
    const char *a[3 + 18];
    size_t l[3 + 18], i;
    char size[24], now[24];
    struct call *c;

    if (q == NULL || cf == NULL || cf->bucket.len == 0 || cf->key.len == 0) {
        return -1;
    }
    snprintf(size, sizeof(size), "%" PRId64, cf->loser_size);
    snprintf(now, sizeof(now), "%" PRId64, timeutil_now_ms());
    a[0] = "XADD";
    a[1] = KEY_CONFLICTS;
    a[2] = "*";
    for (i = 0; i < 9; i++) {
        a[3 + 2 * i] = names[i];
    }
    arg_slice(&a[4], &l[4], cf->bucket);
    arg_slice(&a[6], &l[6], cf->key);
    arg_slice(&a[8], &l[8], cf->winner_stamp);
    arg_slice(&a[10], &l[10], cf->loser_stamp);
    arg_slice(&a[12], &l[12], cf->winner_etag);
    arg_slice(&a[14], &l[14], cf->loser_etag);
    a[16] = size;
    l[16] = strlen(size);
    arg_slice(&a[18], &l[18], cf->kept_at);
    a[20] = now;
    l[20] = strlen(now);
    for (i = 0; i < 3; i++) {
        l[i] = strlen(a[i]);
    }
    for (i = 0; i < 9; i++) {
        l[3 + 2 * i] = strlen(names[i]);
    }
    c = call_new(CALL_DONE, arg, "log_conflict");
    c->cb.done = cb;
    if (rconn_command(q->rc, 0, 21, a, l, on_call_done, c) != 0) {
        free(c);
        return -1;
    }
    return 0;
}

int
queue_command_argv_timeout(struct queue *q, int64_t timeout_ms, int argc, const char **argv,
                           const size_t *argvlen, queue_raw_cb cb, void *arg)
{
    struct call *c;

    if (q == NULL || argc <= 0 || argv == NULL || argvlen == NULL || timeout_ms < 0) {
        return -1;
    }
    c = call_new(CALL_RAW, arg, "command");
    c->cb.raw = cb;
    if (rconn_command(q->rc, timeout_ms, argc, argv, argvlen, on_call_done, c) != 0) {
        free(c);
        return -1;
    }
    return 0;
}

int
queue_command_argv(struct queue *q, int argc, const char **argv, const size_t *argvlen,
                   queue_raw_cb cb, void *arg)
{
    return queue_command_argv_timeout(q, 0, argc, argv, argvlen, cb, arg);
}
