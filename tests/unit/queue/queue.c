/*
 * Unit tests for queue/queue.c against a real redis-server: what each script does to the
 * HLC, leases, the index, intents and the streams, and two queues racing for one key.
 */
#include "queue/queue.h"

#include <inttypes.h>

#include "harness.h"
#include "test.h"

#define N0 1700000000000LL /* a fixed "now" for predictable stamps */

struct got {
    int calls;                       /* callback count */
    const char *err;                 /* last errstr */
    struct queue_begin_result res;   /* begin result */
    int held;                        /* check/renew result */
    char text[4096];                 /* raw reply, rendered */
};

static void
on_begin(void *arg, const char *err, const struct queue_begin_result *res)
{
    struct got *g = arg;

    g->calls++;
    g->err = err;
    if (res != NULL) {
        g->res = *res;
    }
}

static void
on_done(void *arg, const char *err)
{
    struct got *g = arg;

    g->calls++;
    g->err = err;
}

static void
on_check(void *arg, const char *err, int held)
{
    struct got *g = arg;

    g->calls++;
    g->err = err;
    g->held = held;
}

static void
on_raw(void *arg, const char *err, struct redisReply *r)
{
    struct got *g = arg;

    g->calls++;
    g->err = err;
    if (r != NULL) {
        harness_render(r, g->text, sizeof(g->text));
    } else {
        snprintf(g->text, sizeof(g->text), "(null)");
    }
}

static struct redis_srv srv;
static struct queue *q;

static struct queue *
make_queue(const char *site, int64_t timeout_ms)
{
    struct queue_opts o = {"127.0.0.1", srv.port, site, timeout_ms, 50};
    struct queue *nq = queue_create(harness_evb, &o);
    int64_t end = timeutil_mono_ms() + 3000;

    while (nq != NULL && !queue_connected(nq) && timeutil_mono_ms() < end) {
        run_for(5);
    }
    return nq;
}

/* A stamp's text for (ms, counter) at SITE. */
static const char *
st(int64_t ms, unsigned c, const char *site)
{
    static char b[4][STAMP_TEXT_MAX];
    static int i;

    i = (i + 1) % 4;
    snprintf(b[i], sizeof(b[i]), "%012" PRIx64 "%04x.%s", (uint64_t)ms, c, site);
    return b[i];
}

static struct queue_write
wr(const char *key, const char *holder, int64_t now, enum mutation_op op)
{
    struct queue_write w;

    memset(&w, 0, sizeof(w));
    w.bucket = SLICE_LIT("bkt");
    w.key = slice_cstr(key);
    w.holder = holder;
    w.now_ms = now;
    w.lease_ms = 5000;
    w.op = op;
    w.intent_ttl_ms = 30000;
    return w;
}

static struct got
begin_local(struct queue *qq, const struct queue_write *w)
{
    struct got g;

    memset(&g, 0, sizeof(g));
    if (queue_begin_local(qq, w, on_begin, &g) != 0) {
        g.err = "(refused)";
        return g;
    }
    run_until(&g.calls, 3000);
    return g;
}

static struct got
begin_replica(const struct queue_write *w, const char *stamp, int64_t max_off)
{
    struct got g;

    memset(&g, 0, sizeof(g));
    if (queue_begin_replica(q, w, slice_cstr(stamp), max_off, on_begin, &g) != 0) {
        g.err = "(refused)";
        return g;
    }
    run_until(&g.calls, 3000);
    return g;
}

static struct mutation
mut(const struct queue_write *w, enum mutation_op op, const char *stamp, const char *vv,
    const char *etag, int64_t size, const char *tags)
{
    struct mutation m;

    memset(&m, 0, sizeof(m));
    m.op = op;
    m.bucket = w->bucket;
    m.key = w->key;
    m.stamp = slice_cstr(stamp);
    m.vv = slice_cstr(vv);
    m.etag = slice_cstr(etag);
    m.size = size;
    m.tags = slice_cstr(tags);
    m.parts = SLICE_LIT("");
    m.time_ms = N0;
    return m;
}

static const char *
commit(int local, const struct queue_write *w, const struct mutation *m)
{
    struct got g;

    memset(&g, 0, sizeof(g));
    if ((local ? queue_commit_local(q, w, m, on_done, &g) : queue_commit_replica(q, w, m, on_done,
                                                                                   &g)) != 0) {
        return "(refused)";
    }
    if (!run_until(&g.calls, 3000)) {
        return "(no callback)";
    }
    return g.err ? g.err : "ok";
}

static const char *
release(const struct queue_write *w)
{
    struct got g;

    memset(&g, 0, sizeof(g));
    if (queue_release(q, w, on_done, &g) != 0) {
        return "(refused)";
    }
    run_until(&g.calls, 3000);
    return g.err ? g.err : "ok";
}

static int
lease_call(int renew, const struct queue_write *w, int64_t margin)
{
    struct got g;

    memset(&g, 0, sizeof(g));
    if ((renew ? queue_renew_lease(q, w, on_check, &g)
               : queue_check_lease(q, w, margin, on_check, &g)) != 0) {
        return -1;
    }
    run_until(&g.calls, 3000);
    return g.err ? -2 : g.held;
}

static void
test_begin_commit_local(void)
{
    struct queue_write w = wr("k1", "h1", N0, MUT_PUT), w2;
    struct got g;
    struct mutation m;
    char first[STAMP_TEXT_MAX], second[STAMP_TEXT_MAX];
    const char *member = "{\"site\":\"a\",\"holder\":\"h1\",\"op\":\"put\",\"bucket\":\"bkt\","
                         "\"key\":\"k1\"}";
    long long pttl;

    g = begin_local(q, &w);
    ok(g.calls == 1 && g.err == NULL && g.res.verdict == QUEUE_GO, "begin_local: GO");
    ok_str(g.res.stamp, st(N0, 0, "a"), "first stamp is now << 16 at this site");
    ok_str(g.res.vv, "a=1", "new vector counts this site's write");
    ok(!g.res.cur.exists && g.res.cur.stamp[0] == '\0' && g.res.cur.size == -1 &&
           !g.res.cur.deleted,
       "no index entry before the first write");
    snprintf(first, sizeof(first), "%s", g.res.stamp);
    ok(strncmp(rsync("GET s3tee:hlc"), first, 16) == 0 && strlen(rsync("GET s3tee:hlc")) == 16,
       "s3tee:hlc holds the stamp's 16 hex digits");
    ok_str(rsync("GET s3tee:l:bkt/k1"), "h1", "lease holds the holder");
    pttl = atoll(rsync("PTTL s3tee:l:bkt/k1") + 5);
    ok(pttl > 0 && pttl <= 5000, "lease has lease_ms to live (%lld)", pttl);
    {
        char want[512];

        snprintf(want, sizeof(want), "[%s,%lld]", member, N0 + 30000);
        ok_str(rsync("ZRANGE s3tee:intents 0 -1 WITHSCORES"), want,
               "intent recorded with score now + intent_ttl");
        snprintf(want, sizeof(want), "[%s,%lld]", member, N0);
        ok_str(rsync("ZRANGE s3tee:open 0 -1 WITHSCORES"), want,
               "open write recorded with score now (a floor for its stamp's ms)");
    }

    w2 = wr("k1", "h2", N0 + 5, MUT_PUT);
    g = begin_local(q, &w2);
    ok(g.err == NULL && g.res.verdict == QUEUE_BUSY, "another holder: BUSY");
    ok(strncmp(rsync("GET s3tee:hlc"), first, 16) == 0, "BUSY does not advance the HLC");
    ok_str(rsync("ZCARD s3tee:intents"), "(int)1", "BUSY records no intent");
    ok_str(rsync("GET s3tee:l:bkt/k1"), "h1", "BUSY leaves the lease alone");

    ok(lease_call(0, &w, 1000) == 1, "check_lease: held with margin");
    ok(lease_call(0, &w, 10000) == 0, "check_lease: margin beyond the lease's life");
    ok(lease_call(0, &w2, 0) == 0, "check_lease: not held by another holder");
    w.lease_ms = 20000;
    ok(lease_call(1, &w, 0) == 1, "renew_lease: extended");
    pttl = atoll(rsync("PTTL s3tee:l:bkt/k1") + 5);
    ok(pttl > 10000, "renewed lease lives lease_ms (%lld)", pttl);
    ok(lease_call(1, &w2, 0) == 0, "renew_lease by another holder: not held");
    ok_str(rsync("GET s3tee:l:bkt/k1"), "h1", "... and the lease stays");

    m = mut(&w, MUT_PUT, first, "a=1", "\"e1\"", 5, "t=1");
    ok_str(commit(1, &w, &m), "ok", "commit_local");
    {
        char want[512];

        snprintf(want, sizeof(want), "[%s,a=1,0,\"e1\",5,%s,t=1]", first, first);
        ok_str(rsync("HMGET s3tee:o:bkt/k1 st vv del etag size tst tags"), want,
               "index: st, vv, del, etag, size, tst, tags");
        snprintf(want, sizeof(want),
                 ",[op,put,bucket,bkt,key,k1,stamp,%s,vv,a=1,etag,\"e1\",size,5,tags,t=1,parts,,"
                 "time,%lld]]]",
                 first, N0);
        ok(strstr(rsync("XRANGE s3tee:log - +"), want) != NULL, "log entry carries the mutation");
    }
    ok_str(rsync("XLEN s3tee:log"), "(int)1", "one log entry");
    ok_str(rsync("ZCARD s3tee:intents"), "(int)0", "intent removed");
    ok_str(rsync("ZCARD s3tee:open"), "(int)0", "open write removed with it");
    ok_str(rsync("EXISTS s3tee:l:bkt/k1"), "(int)0", "lease released");

    /* the next write sees the entry, bumps the vector, takes the next counter */
    w = wr("k1", "h3", N0, MUT_DELETE);
    g = begin_local(q, &w);
    ok(g.err == NULL && g.res.verdict == QUEUE_GO, "second begin: GO");
    ok_str(g.res.stamp, st(N0, 1, "a"), "same ms: the counter moves");
    ok_str(g.res.vv, "a=2", "vector bumped from the index");
    ok(g.res.cur.exists && strcmp(g.res.cur.stamp, first) == 0 &&
           strcmp(g.res.cur.etag, "\"e1\"") == 0 && g.res.cur.size == 5 &&
           strcmp(g.res.cur.tag_stamp, first) == 0 && strcmp(g.res.cur.vv, "a=1") == 0,
       "previous entry returned");
    snprintf(second, sizeof(second), "%s", g.res.stamp);
    m = mut(&w, MUT_DELETE, second, "a=2", "", -1, "");
    ok_str(commit(1, &w, &m), "ok", "commit_local delete");
    {
        char want[512];

        snprintf(want, sizeof(want), "[%s,a=2,1,,0,%s,]", second, second);
        ok_str(rsync("HMGET s3tee:o:bkt/k1 st vv del etag size tst tags"), want,
               "tombstone: del=1, etag empty, size 0, tags cleared");
    }

    /* the lease went away under the writer: commit refuses, writes nothing */
    w = wr("k1", "h4", N0, MUT_PUT);
    g = begin_local(q, &w);
    ok(g.res.verdict == QUEUE_GO && g.res.cur.deleted, "begin over a tombstone: GO, deleted");
    rsync("DEL s3tee:l:bkt/k1");
    m = mut(&w, MUT_PUT, g.res.stamp, g.res.vv, "\"e3\"", 3, "");
    ok(commit(1, &w, &m) == queue_err_reply, "commit_local without the lease: queue_err_reply");
    ok_str(rsync("XLEN s3tee:log"), "(int)2", "... no log entry");
    ok(strncmp(rsync("HGET s3tee:o:bkt/k1 st"), second, 16) == 0, "... index unchanged");
    ok_str(rsync("ZCARD s3tee:intents"), "(int)1", "... intent kept for a replicator");
    ok_str(rsync("ZCARD s3tee:open"), "(int)1", "... and the open write: the horizon waits");
    ok_str(rsync("ZRANGE s3tee:repair 0 -1 WITHSCORES"), "[bkt/k1,0]",
           "... key in the repair set, due now (the store took a write the index did not)");
    rsync("DEL s3tee:repair");
    ok_str(release(&w), "ok", "release");
    ok_str(rsync("ZCARD s3tee:intents"), "(int)0", "release drops the intent");
    ok_str(rsync("ZCARD s3tee:open"), "(int)0", "... and the open write");

    /* tags are a register of their own */
    w = wr("k1", "h5", N0, MUT_TAGS);
    g = begin_local(q, &w);
    ok(g.res.verdict == QUEUE_GO, "tags begin");
    {
        char tst[STAMP_TEXT_MAX], want[512];

        snprintf(tst, sizeof(tst), "%s", g.res.stamp);
        m = mut(&w, MUT_TAGS, tst, g.res.vv, "", -1, "x=y");
        ok_str(commit(1, &w, &m), "ok", "commit_local tags");
        snprintf(want, sizeof(want), "[%s,1,%s,x=y]", second, tst);
        ok_str(rsync("HMGET s3tee:o:bkt/k1 st del tst tags"), want,
               "tags commit moves only tst and tags");
        ok(strstr(rsync("XREVRANGE s3tee:log + - COUNT 1"), "[op,tags,") != NULL,
           "tags commit is logged");
    }
}

static void
test_hlc(void)
{
    struct queue_write w = wr("k2", "h1", 1000, MUT_PUT);
    struct got g;

    rsync("SET s3tee:hlc 0000000003e8ffff");
    g = begin_local(q, &w);
    ok_str(g.res.stamp, "0000000003e90000.a", "counter overflow carries into the ms");
    release(&w);
    w.now_ms = 5;
    g = begin_local(q, &w);
    ok_str(g.res.stamp, "0000000003e90001.a", "a clock behind the HLC still moves forward");
    release(&w);
    w.now_ms = 0xffffffffffffLL;
    g = begin_local(q, &w);
    ok_str(g.res.stamp, "ffffffffffff0000.a", "48-bit ms at the top of the range (no doubles)");
    release(&w);
    ok_str(rsync("GET s3tee:hlc"), "ffffffffffff0000", "hlc stored as text");
    w.now_ms = 0x1000000000000LL;
    g = begin_local(q, &w);
    ok(g.calls == 1 && g.err == queue_err_reply, "now_ms past 48 bits refused");

    rsync("SET s3tee:hlc 12345");
    w.now_ms = N0;
    g = begin_local(q, &w);
    ok(g.calls == 1 && g.err == queue_err_reply, "malformed s3tee:hlc: queue_err_reply");
    ok_str(rsync("EXISTS s3tee:l:bkt/k2"), "(int)0", "... and no lease taken");
    rsync("SET s3tee:hlc %s", "018bcfe568000000");
}

static void
test_replica(void)
{
    struct queue_write w = wr("r1", "p1", N0, MUT_PUT), wl;
    char sb[STAMP_TEXT_MAX], want[512];
    struct mutation m;
    struct got g;

    snprintf(sb, sizeof(sb), "%s", st(N0 + 1000, 0, "b"));
    g = begin_replica(&w, sb, 60000);
    ok(g.err == NULL && g.res.verdict == QUEUE_GO && !g.res.cur.exists, "begin_replica: GO");
    ok_str(g.res.stamp, sb, "result names the incoming stamp");
    ok(strncmp(rsync("GET s3tee:hlc"), sb, 16) == 0, "HLC advanced to the incoming stamp");
    ok_str(rsync("GET s3tee:l:bkt/r1"), "p1", "replica holds the lease");
    ok_str(rsync("ZCARD s3tee:intents"), "(int)0", "replica records no intent");

    m = mut(&w, MUT_PUT, sb, "b=1", "\"eb\"", 7, "");
    ok_str(commit(0, &w, &m), "ok", "commit_replica");
    snprintf(want, sizeof(want), "[%s,b=1,0,\"eb\",7,%s]", sb, sb);
    ok_str(rsync("HMGET s3tee:o:bkt/r1 st vv del etag size tst"), want, "index updated");
    ok_str(rsync("XLEN s3tee:log"), "(int)3", "commit_replica does not XADD");
    ok_str(rsync("EXISTS s3tee:l:bkt/r1"), "(int)0", "lease released");
    ok_str(rsync("EXISTS s3tee:repair"), "(int)0", "an applied replica needs no repair");

    /* the same stamp again: stale, unless it is a repair (the store lost the index's winner) */
    g = begin_replica(&w, sb, 60000);
    ok(g.err == NULL && g.res.verdict == QUEUE_STALE, "same stamp again: STALE");
    w.repair = 1;
    g = begin_replica(&w, sb, 60000);
    ok(g.err == NULL && g.res.verdict == QUEUE_GO, "same stamp as a repair: GO");
    ok_str(commit(0, &w, &m), "ok", "commit_replica of the repair");
    ok_str(rsync("HMGET s3tee:o:bkt/r1 st vv del etag size tst"), want, "... index unchanged");
    ok_str(rsync("ZRANGE s3tee:repair 0 -1"), "[bkt/r1]",
           "... key in the repair set (checked again: cheap, and it proves the repair)");
    snprintf(want, sizeof(want), "%s", st(N0 + 999, 0, "b"));
    g = begin_replica(&w, want, 60000);
    ok(g.err == NULL && g.res.verdict == QUEUE_STALE, "an older stamp as a repair: STALE");
    w.repair = 0;
    rsync("DEL s3tee:repair");

    wl = wr("r2", "h1", N0, MUT_PUT);
    g = begin_local(q, &wl);
    ok(g.res.verdict == QUEUE_GO && strcmp(g.res.stamp, sb) > 0,
       "a later local stamp is greater than the replica's (%s > %s)", g.res.stamp, sb);
    {
        struct stamp a, b;

        ok(stamp_parse(slice_cstr(g.res.stamp), &a) == 0 && stamp_parse(slice_cstr(sb), &b) == 0 &&
               stamp_cmp(&a, &b) > 0 && stamp_ms(&a) == N0 + 1000,
           "... by the HLC, not by the site id");
    }
    release(&wl);

    g = begin_replica(&w, sb, 60000);
    ok(g.err == NULL && g.res.verdict == QUEUE_STALE, "same stamp again: STALE");
    ok(strcmp(g.res.cur.stamp, sb) == 0, "STALE returns the index entry");
    g = begin_replica(&w, st(N0, 5, "c"), 60000);
    ok(g.res.verdict == QUEUE_STALE, "older stamp: STALE");
    ok_str(rsync("EXISTS s3tee:l:bkt/r1"), "(int)0", "STALE takes no lease");
    g = begin_replica(&w, st(N0 + 1000, 0, "a"), 60000);
    ok(g.res.verdict == QUEUE_STALE, "same HLC, smaller site: STALE");
    g = begin_replica(&w, st(N0 + 1000, 0, "b-"), 60000);
    ok(g.res.verdict == QUEUE_GO, "same HLC, larger site (byte order, '-'): GO");
    release(&w);

    {
        char hlc[32];

        snprintf(hlc, sizeof(hlc), "%s", rsync("GET s3tee:hlc"));
        g = begin_replica(&w, st(N0 + 60001, 0, "c"), 60000);
        ok(g.err == NULL && g.res.verdict == QUEUE_FUTURE, "beyond max_offset: FUTURE");
        ok_str(rsync("GET s3tee:hlc"), hlc, "FUTURE leaves the HLC alone");
        ok_str(rsync("EXISTS s3tee:l:bkt/r1"), "(int)0", "FUTURE takes no lease");
        g = begin_replica(&w, st(N0 + 60000, 0, "c"), 60000);
        ok(g.res.verdict == QUEUE_GO, "exactly max_offset ahead: accepted");
        release(&w);
    }

    wl = wr("r1", "h9", N0, MUT_PUT);
    g = begin_local(q, &wl);
    ok(g.res.verdict == QUEUE_GO, "local writer holds r1");
    g = begin_replica(&w, st(N0 + 70000, 0, "c"), 60000);
    ok(g.res.verdict == QUEUE_FUTURE, "(FUTURE is decided before the lease)");
    g = begin_replica(&w, st(N0 + 59000, 0, "c"), 60000);
    ok(g.res.verdict == QUEUE_BUSY, "newer replica while a local write holds the key: BUSY");
    release(&wl);

    /* tags register: replica tags compare with tst, a PUT keeps newer tags */
    {
        char x[STAMP_TEXT_MAX], y[STAMP_TEXT_MAX], cur[STAMP_TEXT_MAX];
        struct queue_write wt = wr("r1", "p2", N0, MUT_TAGS);

        snprintf(cur, sizeof(cur), "%s", rsync("HGET s3tee:o:bkt/r1 st"));
        snprintf(x, sizeof(x), "%s", st(N0 + 50000, 0, "c"));
        snprintf(y, sizeof(y), "%s", st(N0 + 40000, 0, "c"));
        g = begin_replica(&wt, st(N0 + 10, 0, "c"), 60000);
        ok(g.res.verdict == QUEUE_STALE, "tags older than tst: STALE");
        g = begin_replica(&wt, x, 60000);
        ok(g.res.verdict == QUEUE_GO, "newer tags: GO");
        m = mut(&wt, MUT_TAGS, x, "", "", -1, "c=1");
        ok_str(commit(0, &wt, &m), "ok", "commit_replica tags");
        snprintf(want, sizeof(want), "[%s,%s,c=1]", cur, x);
        ok_str(rsync("HMGET s3tee:o:bkt/r1 st tst tags"), want, "tags applied, data untouched");

        g = begin_replica(&w, y, 60000);
        ok(g.res.verdict == QUEUE_GO, "PUT between st and tst: GO (compared with st)");
        ok_str(g.res.cur.tag_stamp, x, "result shows the newer tag stamp");
        m = mut(&w, MUT_PUT, y, "c=1", "\"ey\"", 9, "old=1");
        ok_str(commit(0, &w, &m), "ok", "commit_replica put");
        snprintf(want, sizeof(want), "[%s,\"ey\",%s,c=1]", y, x);
        ok_str(rsync("HMGET s3tee:o:bkt/r1 st etag tst tags"), want,
               "data applied, the newer tags kept");

        m = mut(&w, MUT_PUT, st(N0 + 30000, 0, "c"), "c=1", "\"old\"", 1, "");
        ok_str(commit(0, &w, &m), "ok", "commit_replica with an older stamp");
        ok_str(rsync("HMGET s3tee:o:bkt/r1 st etag tst tags"), want, "... changes nothing");
        m = mut(&w, MUT_DELETE, st(N0 + 45000, 0, "c"), "c=2", "", -1, "");
        ok_str(commit(0, &w, &m), "ok", "commit_replica delete");
        snprintf(want, sizeof(want), "[%s,1,%s,c=1]", st(N0 + 45000, 0, "c"), x);
        ok_str(rsync("HMGET s3tee:o:bkt/r1 st del tst tags"), want,
               "replica delete: tombstone, newer tags kept");
    }
    ok_str(rsync("XLEN s3tee:log"), "(int)3", "no replica write was logged");
}

static void
test_release_and_expiry(void)
{
    struct queue_write a = wr("k4", "h1", N0, MUT_PUT), b = wr("k4", "h2", N0, MUT_PUT);
    struct got g;

    g = begin_local(q, &a);
    ok(g.res.verdict == QUEUE_GO, "k4 taken by h1");
    ok_str(release(&b), "ok", "release by another holder completes");
    ok_str(rsync("GET s3tee:l:bkt/k4"), "h1", "... but leaves h1's lease");
    ok_str(rsync("ZCARD s3tee:intents"), "(int)1", "... and h1's intent");
    ok_str(release(&a), "ok", "release by the holder");
    ok_str(rsync("EXISTS s3tee:l:bkt/k4"), "(int)0", "lease gone");
    ok_str(rsync("ZCARD s3tee:intents"), "(int)0", "intent gone");

    a.lease_ms = 100;
    g = begin_local(q, &a);
    ok(g.res.verdict == QUEUE_GO, "short lease taken");
    g = begin_local(q, &b);
    ok(g.res.verdict == QUEUE_BUSY, "other holder: BUSY");
    run_for(150);
    ok(lease_call(0, &a, 0) == 0, "expired lease is not held");
    g = begin_local(q, &b);
    ok(g.res.verdict == QUEUE_GO, "after expiry another holder gets in");
    a.lease_ms = 5000;
    {
        struct mutation m = mut(&a, MUT_PUT, g.res.stamp, g.res.vv, "\"x\"", 1, "");

        ok(commit(1, &a, &m) == queue_err_reply, "the expired holder cannot commit");
        m = mut(&b, MUT_PUT, g.res.stamp, g.res.vv, "\"x\"", 1, "");
        ok_str(commit(1, &b, &m), "ok", "the new holder commits");
    }
    release(&a);
}

static void
test_binary_key(void)
{
    static const char key[] = "dir one/line\nbreak \xff\xfe \"q\"\\ end";
    struct queue_write w = wr("", "h1", N0, MUT_PUT);
    redisReply *r;
    struct mutation m;
    struct got g;
    char lease[128], idx[128];
    size_t kl = sizeof(key) - 1;

    w.key = slice_make(key, kl);
    g = begin_local(q, &w);
    ok(g.res.verdict == QUEUE_GO, "binary key: GO");
    snprintf(lease, sizeof(lease), "s3tee:l:bkt/");
    memcpy(lease + 12, key, kl);
    snprintf(idx, sizeof(idx), "s3tee:o:bkt/");
    memcpy(idx + 12, key, kl);
    r = redisCommand(harness_sync, "GET %b", lease, 12 + kl);
    ok(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "h1") == 0,
       "lease key holds the key's exact bytes");
    freeReplyObject(r);
    ok_str(rsync("ZRANGE s3tee:intents 0 -1"),
           "[{\"site\":\"a\",\"holder\":\"h1\",\"op\":\"put\",\"bucket\":\"bkt\",\"key\":"
           "\"dir%20one/line%0Abreak%20%FF%FE%20%22q%22%5C%20end\"}]",
           "intent member: key URI-encoded, '/' kept, valid JSON");
    m = mut(&w, MUT_PUT, g.res.stamp, g.res.vv, "\"b\"", 2, "");
    ok_str(commit(1, &w, &m), "ok", "binary key commits");
    r = redisCommand(harness_sync, "HGET %b etag", idx, 12 + kl);
    ok(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "\"b\"") == 0,
       "index key holds the key's exact bytes");
    freeReplyObject(r);
    r = redisCommand(harness_sync, "XREVRANGE s3tee:log + - COUNT 1");
    ok(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
           r->element[0]->element[1]->elements >= 6 &&
           r->element[0]->element[1]->element[5]->len == kl &&
           memcmp(r->element[0]->element[1]->element[5]->str, key, kl) == 0,
       "log entry's key field holds the exact bytes");
    {
        struct slice f[2 * MUTATION_NFIELDS];
        struct mutation d;
        size_t i, n = r->element[0]->element[1]->elements;

        for (i = 0; i < n && i < 2 * MUTATION_NFIELDS; i++) {
            f[i] = slice_make(r->element[0]->element[1]->element[i]->str,
                              r->element[0]->element[1]->element[i]->len);
        }
        ok(mutation_decode(f, n / 2, &d) == 0 && slice_eq(d.key, w.key) && d.size == 2 &&
               slice_eq(d.stamp, m.stamp),
           "the log entry decodes back to the mutation");
    }
    freeReplyObject(r);
}

static void
test_conflict_and_raw(void)
{
    struct queue_conflict c;
    struct got g;
    const char *ping[] = {"PING"}, *bad[] = {"NOSUCHCOMMAND", "x"};
    size_t pl[] = {4}, bl[] = {13, 1};

    memset(&c, 0, sizeof(c));
    c.bucket = SLICE_LIT("bkt");
    c.key = SLICE_LIT("k1");
    c.winner_stamp = SLICE_LIT("018bcfe568010000.b");
    c.loser_stamp = SLICE_LIT("018bcfe568000000.a");
    c.winner_etag = SLICE_LIT("\"w\"");
    c.loser_etag = SLICE_LIT("\"l\"");
    c.loser_size = 42;
    memset(&g, 0, sizeof(g));
    ok(queue_log_conflict(q, &c, on_done, &g) == 0 && run_until(&g.calls, 3000) && !g.err,
       "log_conflict");
    ok(strstr(rsync("XRANGE s3tee:conflicts - +"),
              ",[bucket,bkt,key,k1,winner,018bcfe568010000.b,loser,018bcfe568000000.a,"
              "winner_etag,\"w\",loser_etag,\"l\",loser_size,42,kept_at,,time_ms,") != NULL,
       "conflict record fields");

    memset(&g, 0, sizeof(g));
    ok(queue_command_argv(q, 1, ping, pl, on_raw, &g) == 0 && run_until(&g.calls, 3000) &&
           !g.err && strcmp(g.text, "PONG") == 0,
       "raw command");
    memset(&g, 0, sizeof(g));
    ok(queue_command_argv(q, 2, bad, bl, on_raw, &g) == 0 && run_until(&g.calls, 3000) &&
           g.err == queue_err_reply && strncmp(g.text, "(err)", 5) == 0,
       "raw error reply: queue_err_reply with the error text");
    memset(&g, 0, sizeof(g));
    ok(queue_command_argv_timeout(q, 5000, 1, ping, pl, on_raw, &g) == 0 &&
           run_until(&g.calls, 3000) && !g.err,
       "raw command with its own timeout");
}

static void
test_noscript(void)
{
    struct queue_write w = wr("k6", "h1", N0, MUT_PUT);
    struct got g;

    rsync("SCRIPT FLUSH");
    g = begin_local(q, &w);
    ok(g.calls == 1 && g.err == NULL && g.res.verdict == QUEUE_GO,
       "after SCRIPT FLUSH: NOSCRIPT answered with EVAL");
    ok_str(release(&w), "ok", "and again (EVAL cached it)");
}

static void
test_invalid(void)
{
    struct queue_write w = wr("k7", "h1", N0, MUT_PUT);
    struct mutation m;
    int calls = 0;

    w.key = SLICE_LIT("");
    ok(queue_begin_local(q, &w, (queue_begin_cb)NULL, &calls) == -1, "empty key refused");
    w = wr("k7", NULL, N0, MUT_PUT);
    ok(queue_begin_local(q, &w, NULL, NULL) == -1, "no holder refused");
    w = wr("k7", "h1", N0, MUT_PUT);
    ok(queue_begin_local(NULL, &w, NULL, NULL) == -1, "NULL queue refused");
    ok(queue_begin_replica(q, &w, SLICE_LIT("zz.a"), 1000, NULL, NULL) == -1,
       "malformed replica stamp refused");
    m = mut(&w, MUT_PUT, "018bcfe568000000.a", "a=1", "", 1, "");
    m.key = SLICE_LIT("other");
    ok(queue_commit_local(q, &w, &m, NULL, NULL) == -1, "mutation for another key refused");
    m = mut(&w, MUT_PUT, "nope", "a=1", "", 1, "");
    ok(queue_commit_replica(q, &w, &m, NULL, NULL) == -1, "mutation with a bad stamp refused");
    ok(queue_release(q, &w, NULL, NULL) == 0, "fire-and-forget release (NULL callback)");
    run_for(50);
}

/* Two proxies: two queues hammering one key with their own holders. */
struct hammer {
    struct queue *q;               /* this proxy's queue */
    const char *name;              /* holder prefix */
    int64_t skew_ms;               /* this proxy's clock error */
    int n;                         /* requests started */
    int commits, busy, errors;     /* outcomes */
    int target;                    /* commits to make */
    char holder[32];               /* current request's holder */
    char stamp[STAMP_TEXT_MAX];    /* current stamp */
    char vv[VV_TEXT_MAX];          /* current vector */
    struct queue_write w;          /* current write */
};

static int hammer_holding, hammer_overlaps, hammer_unordered, hammer_done;
static char hammer_last[STAMP_TEXT_MAX];

static void hammer_begin(struct hammer *h);

static void
hammer_on_commit(void *arg, const char *err)
{
    struct hammer *h = arg;

    if (err != NULL) {
        h->errors++;
    }
    h->commits++;
    if (h->commits < h->target) {
        h->n++;
        hammer_begin(h);
    } else {
        hammer_done++;
    }
}

static void
hammer_commit(evutil_socket_t fd, short what, void *arg)
{
    struct hammer *h = arg;
    struct mutation m = mut(&h->w, MUT_PUT, h->stamp, h->vv, "\"h\"", 1, "");

    (void)fd;
    (void)what;
    hammer_holding = 0; /* before the commit leaves: the next GO comes after it */
    if (queue_commit_local(h->q, &h->w, &m, hammer_on_commit, h) != 0) {
        h->errors++;
    }
}

static void
hammer_on_begin(void *arg, const char *err, const struct queue_begin_result *res)
{
    struct hammer *h = arg;
    struct stamp a, b;
    struct timeval hold = {0, 1000};

    if (err != NULL) {
        h->errors++;
        hammer_done++;
        return;
    }
    if (res->verdict == QUEUE_BUSY) {
        h->busy++;
        hammer_begin(h);
        return;
    }
    if (hammer_holding) {
        hammer_overlaps++;
    }
    hammer_holding = 1;
    if (hammer_last[0] != '\0' &&
        (stamp_parse(slice_cstr(res->stamp), &a) != 0 ||
         stamp_parse(slice_cstr(hammer_last), &b) != 0 || stamp_cmp(&a, &b) <= 0)) {
        hammer_unordered++;
    }
    snprintf(hammer_last, sizeof(hammer_last), "%s", res->stamp);
    snprintf(h->stamp, sizeof(h->stamp), "%s", res->stamp);
    snprintf(h->vv, sizeof(h->vv), "%s", res->vv);
    event_base_once(harness_evb, -1, EV_TIMEOUT, hammer_commit, h, &hold);
}

static void
hammer_begin(struct hammer *h)
{
    snprintf(h->holder, sizeof(h->holder), "%s-%d", h->name, h->n);
    h->w = wr("hot", h->holder, timeutil_now_ms() + h->skew_ms, MUT_PUT);
    if (queue_begin_local(h->q, &h->w, hammer_on_begin, h) != 0) {
        h->errors++;
        hammer_done++;
    }
}

static void
test_two_proxies(void)
{
    struct hammer h1, h2;
    long long before = atoll(rsync("XLEN s3tee:log") + 5);
    char want[32];

    memset(&h1, 0, sizeof(h1));
    memset(&h2, 0, sizeof(h2));
    h1.q = make_queue("a", 2000);
    h2.q = make_queue("a", 2000);
    h1.name = "p1";
    h2.name = "p2";
    h2.skew_ms = -5000; /* the second proxy's clock is 5 s behind */
    h1.target = h2.target = 40;
    hammer_done = 0;
    hammer_begin(&h1);
    hammer_begin(&h2);
    {
        int64_t end = timeutil_mono_ms() + 20000;

        while (hammer_done < 2 && timeutil_mono_ms() < end) {
            run_for(10);
        }
    }
    ok(h1.commits == 40 && h2.commits == 40 && h1.errors == 0 && h2.errors == 0,
       "two proxies: 40 commits each, no errors (%d/%d, errors %d/%d)", h1.commits, h2.commits,
       h1.errors, h2.errors);
    /* they contended (which one waits is up to the scheduler: on a loaded machine one of
     * them can win every race) */
    ok(h1.busy + h2.busy > 0, "BUSY seen (%d, %d)", h1.busy, h2.busy);
    ok(hammer_overlaps == 0, "never two lease holders at once");
    ok(hammer_unordered == 0, "stamps strictly increase in lease order (unique)");
    snprintf(want, sizeof(want), "(int)%lld", before + 80);
    ok_str(rsync("XLEN s3tee:log"), want, "80 log entries");
    ok(strncmp(rsync("GET s3tee:hlc"), hammer_last, 16) == 0,
       "the HLC is the last stamp minted (BUSY never advanced it)");
    {
        char vv[32];

        snprintf(vv, sizeof(vv), "a=%d", 80);
        ok_str(rsync("HGET s3tee:o:bkt/hot vv"), vv, "the vector counted every write");
    }
    queue_destroy(h1.q);
    queue_destroy(h2.q);
    run_for(20);
}

/* queue_settle_intent's outcome, -1 refused, -2 error, -3 no callback. */
static int settle_out;

static void
on_settle(void *arg, const char *err, enum queue_settle_outcome out)
{
    struct got *g = arg;

    g->calls++;
    g->err = err;
    settle_out = (int)out;
}

/* The tag set a settled put carries (what the replicator read with GET ?tagging). */
static const char *settle_tags_arg = "";

static int
settle(const char *key, const char *holder, enum mutation_op op, int64_t now, int found,
       const char *stamp, const char *vv, const char *expect)
{
    char member[256];
    struct queue_settle s;
    struct got g;

    snprintf(member, sizeof(member),
             "{\"site\":\"a\",\"holder\":\"%s\",\"op\":\"%s\",\"bucket\":\"bkt\",\"key\":\"%s\"}",
             holder, mutation_op_name(op), key);
    memset(&s, 0, sizeof(s));
    memset(&g, 0, sizeof(g));
    s.member = slice_cstr(member);
    s.op = op;
    s.bucket = SLICE_LIT("bkt");
    s.key = slice_cstr(key);
    s.now_ms = now;
    s.expect_stamp = slice_cstr(expect);
    s.found = found;
    s.stamp = slice_cstr(stamp);
    s.vv = slice_cstr(vv);
    s.etag = SLICE_LIT("\"es\"");
    s.size = 7;
    s.tags = slice_cstr(settle_tags_arg);
    if (queue_settle_intent(q, &s, on_settle, &g) != 0) {
        return -1;
    }
    if (!run_until(&g.calls, 3000)) {
        return -3;
    }
    return g.err ? -2 : settle_out;
}

static void
test_settle(void)
{
    struct queue_write w = wr("s1", "hs1", N0 + 50000, MUT_PUT);
    struct got g;
    char stamp[STAMP_TEXT_MAX], want[512], cur[STAMP_TEXT_MAX];
    long long xlen;

    /* a put that reached the store, the proxy dead before commit_local */
    xlen = atoll(rsync("XLEN s3tee:log") + 5);
    g = begin_local(q, &w);
    ok(g.res.verdict == QUEUE_GO, "settle: put begun");
    snprintf(stamp, sizeof(stamp), "%s", g.res.stamp);
    ok(settle("s1", "hs1", MUT_PUT, N0 + 60000, 1, stamp, g.res.vv, "") == QUEUE_SETTLE_BUSY,
       "settle: lease held: BUSY");
    ok_str(rsync("ZCARD s3tee:intents"), "(int)1", "... intent kept");
    ok(atoll(rsync("XLEN s3tee:log") + 5) == xlen, "... nothing logged");
    rsync("DEL s3tee:l:bkt/s1"); /* the lease ran out */
    settle_tags_arg = "k%201=v&w=c0";
    ok(settle("s1", "hs1", MUT_PUT, N0 + 60000, 1, stamp, g.res.vv, "") == QUEUE_SETTLE_LOGGED,
       "settle: the store has a newer stamp: LOGGED");
    settle_tags_arg = "";
    snprintf(want, sizeof(want), "[%s,a=1,0,\"es\",7,%s,k%%201=v&w=c0]", stamp, stamp);
    ok_str(rsync("HMGET s3tee:o:bkt/s1 st vv del etag size tst tags"), want,
           "... index from the store's object and its tags");
    snprintf(want, sizeof(want),
             "[op,put,bucket,bkt,key,s1,stamp,%s,vv,a=1,etag,\"es\",size,7,tags,k%%201=v&w=c0,"
             "parts,,time,%lld]]]",
             stamp, N0 + 60000);
    ok(strstr(rsync("XREVRANGE s3tee:log + - COUNT 1"), want) != NULL,
       "... put mutation logged");
    ok(atoll(rsync("XLEN s3tee:log") + 5) == xlen + 1, "... once");
    ok_str(rsync("ZCARD s3tee:intents"), "(int)0", "... intent removed");
    ok_str(rsync("ZCARD s3tee:open"), "(int)0", "... and the open write");
    ok(settle("s1", "hs1", MUT_PUT, N0 + 60000, 1, stamp, "a=1", "") == QUEUE_SETTLE_GONE,
       "settle again (another replicator): GONE");
    ok(atoll(rsync("XLEN s3tee:log") + 5) == xlen + 1, "... nothing logged twice");

    /* a put whose bytes never landed: the store has the older stamp (or nothing) */
    rsync("DEL s3tee:repair"); /* what the tests above put there */
    w = wr("s1", "hs2", N0 + 50000, MUT_PUT);
    g = begin_local(q, &w);
    rsync("DEL s3tee:l:bkt/s1");
    ok(settle("s1", "hs2", MUT_PUT, N0 + 60000, 1, stamp, "a=1", "") == QUEUE_SETTLE_DROPPED,
       "settle: store stamp not newer than the index: DROPPED");
    ok_str(rsync("ZCARD s3tee:intents"), "(int)0", "... intent removed");
    ok(strncmp(rsync("HGET s3tee:o:bkt/s1 st"), stamp, strlen(stamp)) == 0, "... index unchanged");
    ok_str(rsync("EXISTS s3tee:repair"), "(int)0", "... the store has the index's stamp: no repair");
    g = begin_local(q, &w);
    rsync("DEL s3tee:l:bkt/s1");
    ok(settle("s1", "hs2", MUT_PUT, N0 + 60000, 1, "0000000000010000.a", "a=1", "") ==
           QUEUE_SETTLE_DROPPED,
       "settle: the store has an OLDER stamp than the index (it landed last): DROPPED");
    ok_str(rsync("ZRANGE s3tee:repair 0 -1"), "[bkt/s1]", "... and the key is in the repair set");
    rsync("DEL s3tee:repair");
    g = begin_local(q, &w);
    rsync("DEL s3tee:l:bkt/s1");
    ok(settle("s1", "hs2", MUT_PUT, N0 + 60000, 0, "", "", "") == QUEUE_SETTLE_DROPPED,
       "settle: no object: DROPPED");
    ok(atoll(rsync("XLEN s3tee:log") + 5) == xlen + 1, "... nothing logged");

    /* a delete the store did, the proxy dead before commit_local */
    w = wr("s1", "hs3", N0 + 50000, MUT_DELETE);
    g = begin_local(q, &w);
    rsync("DEL s3tee:l:bkt/s1");
    ok(settle("s1", "hs3", MUT_DELETE, N0 + 60000, 0, "", "", "0000000000000000.a") ==
           QUEUE_SETTLE_DROPPED,
       "settle delete: the index moved since the caller looked: DROPPED");
    g = begin_local(q, &w);
    rsync("DEL s3tee:l:bkt/s1");
    ok(settle("s1", "hs3", MUT_DELETE, N0 + 60000, 1, "", "", stamp) == QUEUE_SETTLE_DROPPED,
       "settle delete: the object is still there: DROPPED");
    g = begin_local(q, &w);
    rsync("DEL s3tee:l:bkt/s1");
    snprintf(cur, sizeof(cur), "%s", rsync("GET s3tee:hlc"));
    ok(settle("s1", "hs3", MUT_DELETE, N0 + 100000, 0, "", "", stamp) == QUEUE_SETTLE_LOGGED,
       "settle delete: 404 at the store: LOGGED");
    {
        uint64_t h = strtoull(cur, NULL, 16) + 1, n = (uint64_t)(N0 + 100000) << 16;
        char nst[STAMP_TEXT_MAX];

        snprintf(nst, sizeof(nst), "%016" PRIx64 ".a", h > n ? h : n);

        snprintf(want, sizeof(want), "[%s,a=2,1,,0,%s,]", nst, nst);
        ok_str(rsync("HMGET s3tee:o:bkt/s1 st vv del etag size tst tags"), want,
               "... tombstone with a fresh stamp (max(now << 16, hlc + 1)) and the vector bumped");
        ok(strncmp(rsync("GET s3tee:hlc"), nst, 16) == 0, "... the HLC moved to it");
        snprintf(want, sizeof(want), "[op,delete,bucket,bkt,key,s1,stamp,%s,vv,a=2,", nst);
        ok(strstr(rsync("XREVRANGE s3tee:log + - COUNT 1"), want) != NULL,
           "... delete mutation logged");
    }
    ok_str(rsync("ZCARD s3tee:intents"), "(int)0", "... intent removed");
    g = begin_local(q, &w);
    rsync("DEL s3tee:l:bkt/s1");
    snprintf(cur, sizeof(cur), "%s", rsync("HGET s3tee:o:bkt/s1 st"));
    ok(settle("s1", "hs3", MUT_DELETE, N0 + 100000, 0, "", "", cur) == QUEUE_SETTLE_DROPPED,
       "settle delete over a tombstone: DROPPED");
    ok(atoll(rsync("XLEN s3tee:log") + 5) == xlen + 2, "... nothing more logged");

    /* tags: forgotten (resync carries tags) */
    w = wr("s1", "hs4", N0 + 50000, MUT_TAGS);
    g = begin_local(q, &w);
    rsync("DEL s3tee:l:bkt/s1");
    ok(settle("s1", "hs4", MUT_TAGS, N0 + 100000, 1, "", "", "") == QUEUE_SETTLE_DROPPED,
       "settle tags: DROPPED");
    ok_str(rsync("ZCARD s3tee:intents"), "(int)0", "... intent removed");

    ok(settle("s1", "hs5", MUT_PUT, N0, 1, "bad", "a=1", "") == -1,
       "settle: a found put with a malformed stamp is refused");
    ok(settle("s1", "hs5", MUT_PUT, N0, 1, stamp, "a=x", "") == -1,
       "settle: ... and with a malformed vector");
}

int
main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    harness_evb = event_base_new();
    harness_start(&srv);
    q = make_queue("a", 2000);
    ok(q != NULL && queue_connected(q), "queue connects");
    if (q == NULL || !queue_connected(q)) {
        return done_testing();
    }
    test_begin_commit_local();
    test_hlc();
    test_replica();
    test_release_and_expiry();
    test_binary_key();
    test_conflict_and_raw();
    test_noscript();
    test_invalid();
    test_two_proxies();
    test_settle();
    ok(queue_create(harness_evb, &(struct queue_opts){"127.0.0.1", srv.port, "A", 100, 100}) ==
           NULL,
       "queue_create refuses a bad site id");
    queue_destroy(q);
    run_for(20);
    event_base_free(harness_evb);
    return done_testing();
}
