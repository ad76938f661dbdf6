/*
 * Unit tests for queue/rconn.c through the queue API, against a real redis-server that the
 * test starts late, puts to sleep, kills and restarts: every command completes exactly once
 * (reply, queue_err_unavailable, queue_err_timeout or queue_err_shutdown) and the queue
 * reconnects by itself.
 */
#include "queue/queue.h"

#include <fcntl.h>

#include "common/log.h"
#include "harness.h"
#include "test.h"

struct got {
    int calls;          /* callback count */
    const char *err;    /* last errstr */
    int64_t at_ms;      /* when (monotonic) */
    int verdict;        /* begin verdict, -1 without result */
    char stamp[STAMP_TEXT_MAX]; /* begin stamp */
    char text[256];     /* raw reply, rendered */
};

static void
on_raw(void *arg, const char *err, struct redisReply *r)
{
    struct got *g = arg;

    g->calls++;
    g->err = err;
    g->at_ms = timeutil_mono_ms();
    if (r != NULL) {
        harness_render(r, g->text, sizeof(g->text));
    } else {
        snprintf(g->text, sizeof(g->text), "(null)");
    }
}

static void
on_begin(void *arg, const char *err, const struct queue_begin_result *res)
{
    struct got *g = arg;

    g->calls++;
    g->err = err;
    g->at_ms = timeutil_mono_ms();
    g->verdict = res ? (int)res->verdict : -1;
    if (res != NULL) {
        snprintf(g->stamp, sizeof(g->stamp), "%s", res->stamp);
    }
}

static void
on_done(void *arg, const char *err)
{
    struct got *g = arg;

    g->calls++;
    g->err = err;
    g->at_ms = timeutil_mono_ms();
}

static struct queue *
make_queue(int port, int64_t timeout_ms, int wait)
{
    struct queue_opts o = {"127.0.0.1", port, "a", timeout_ms, 50};
    struct queue *q = queue_create(harness_evb, &o);
    int64_t end = timeutil_mono_ms() + 3000;

    while (wait && !queue_connected(q) && timeutil_mono_ms() < end) {
        run_for(5);
    }
    return q;
}

static int
wait_connected(struct queue *q, int64_t ms)
{
    int64_t end = timeutil_mono_ms() + ms;

    while (!queue_connected(q) && timeutil_mono_ms() < end) {
        run_for(5);
    }
    return queue_connected(q);
}

static int
raw(struct queue *q, struct got *g, const char *a0, const char *a1, const char *a2)
{
    const char *argv[3] = {a0, a1, a2};
    size_t lens[3] = {strlen(a0), a1 ? strlen(a1) : 0, a2 ? strlen(a2) : 0};

    memset(g, 0, sizeof(*g));
    return queue_command_argv(q, a2 ? 3 : a1 ? 2 : 1, argv, lens, on_raw, g);
}

/* PING until PONG (the server may still be waking up); 1 when it answered. */
static int
ping_ok(struct queue *q, int64_t ms)
{
    int64_t end = timeutil_mono_ms() + ms;
    struct got g;

    while (timeutil_mono_ms() < end) {
        if (raw(q, &g, "PING", NULL, NULL) == 0 && run_until(&g.calls, 1000) && g.err == NULL &&
            strcmp(g.text, "PONG") == 0) {
            return 1;
        }
        run_for(20);
    }
    return 0;
}

static struct queue_write
wr(const char *key, const char *holder, int64_t now)
{
    struct queue_write w;

    memset(&w, 0, sizeof(w));
    w.bucket = SLICE_LIT("bkt");
    w.key = slice_cstr(key);
    w.holder = holder;
    w.now_ms = now;
    w.lease_ms = 5000;
    w.op = MUT_PUT;
    w.intent_ttl_ms = 30000;
    return w;
}

static int
begin(struct queue *q, const struct queue_write *w, struct got *g)
{
    memset(g, 0, sizeof(*g));
    g->verdict = -1;
    return queue_begin_local(q, w, on_begin, g);
}

static struct redis_srv srv, aof;

/* Redis not there at start: fail at once; Redis appears: connect by itself. */
static void
test_late_start(void)
{
    struct queue *q;
    struct queue_write w = wr("k", "h", 1000);
    struct got a, b;
    int64_t t0;

    srv.port = harness_free_port();
    q = make_queue(srv.port, 1000, 0);
    run_for(30);
    ok(q != NULL && !queue_connected(q), "no server: not connected");
    t0 = timeutil_mono_ms();
    ok(raw(q, &a, "PING", NULL, NULL) == 0 && begin(q, &w, &b) == 0, "calls accepted while down");
    ok(a.calls == 0 && b.calls == 0, "... and not completed inside the call");
    run_until(&b.calls, 2000);
    ok(a.calls == 1 && a.err == queue_err_unavailable && b.calls == 1 &&
           b.err == queue_err_unavailable,
       "both fail with queue_err_unavailable");
    ok(b.at_ms - t0 < 100, "... at once (%lld ms)", (long long)(b.at_ms - t0));
    harness_start(&srv);
    ok(wait_connected(q, 3000), "server started: the queue connects by itself");
    ok(ping_ok(q, 2000), "and works");
    run_for(50);
    ok(a.calls == 1 && b.calls == 1, "each callback ran once");
    queue_destroy(q);
}

/* A command that outlives command_timeout_ms drops the connection. */
static void
test_timeout(void)
{
    struct queue *q = make_queue(srv.port, 200, 1);
    struct queue_write w = wr("k", "h", 1000);
    struct got s, p, b;
    int64_t t0 = timeutil_mono_ms();

    ok(queue_connected(q), "timeout test: connected");
    raw(q, &s, "DEBUG", "SLEEP", "1");
    raw(q, &p, "PING", NULL, NULL);
    begin(q, &w, &b);
    run_until(&b.calls, 3000);
    ok(s.calls == 1 && s.err == queue_err_timeout, "the slow command: queue_err_timeout");
    ok(s.at_ms - t0 >= 150 && s.at_ms - t0 < 700, "... after about 200 ms (%lld ms)",
       (long long)(s.at_ms - t0));
    ok(p.calls == 1 && p.err == queue_err_unavailable && b.calls == 1 &&
           b.err == queue_err_unavailable,
       "the commands behind it: queue_err_unavailable");
    ok(!queue_connected(q), "the connection was dropped");
    ok(ping_ok(q, 4000), "reconnected and working once Redis is responsive again");
    run_for(300);
    ok(s.calls == 1 && p.calls == 1 && b.calls == 1, "each callback ran exactly once");
    begin(q, &w, &b);
    run_until(&b.calls, 2000);
    ok(b.err == NULL && b.verdict == QUEUE_GO, "scripts work after the reconnect");
    queue_destroy(q);
}

/* Redis killed with commands in flight, then restarted on the same port. */
static void
test_killed(void)
{
    struct queue *q = make_queue(srv.port, 5000, 1);
    struct queue_write w = wr("k2", "h", 1000);
    struct got s, p, n, b;
    int64_t t0;

    ok(queue_connected(q), "kill test: connected");
    raw(q, &s, "DEBUG", "SLEEP", "3");
    begin(q, &w, &b);
    run_for(100);
    t0 = timeutil_mono_ms();
    harness_kill(&srv);
    run_until(&b.calls, 2000);
    ok(s.calls == 1 && s.err == queue_err_unavailable && b.calls == 1 &&
           b.err == queue_err_unavailable,
       "in-flight commands fail with queue_err_unavailable");
    ok(b.at_ms - t0 < 500, "... quickly (%lld ms)", (long long)(b.at_ms - t0));
    ok(!queue_connected(q), "not connected");
    t0 = timeutil_mono_ms();
    raw(q, &n, "PING", NULL, NULL);
    run_until(&n.calls, 2000);
    ok(n.calls == 1 && n.err == queue_err_unavailable && n.at_ms - t0 < 100,
       "a new command fails at once (%lld ms)", (long long)(n.at_ms - t0));
    run_for(200); /* a few reconnect attempts against nothing */
    ok(!queue_connected(q), "still down while nothing listens");
    harness_start(&srv);
    ok(wait_connected(q, 3000), "restarted on the same port: reconnected by itself");
    ok(ping_ok(q, 2000), "raw commands work again");
    begin(q, &w, &p);
    run_until(&p.calls, 2000);
    ok(p.err == NULL && p.verdict == QUEUE_GO, "scripts work again (loaded on reconnect)");
    run_for(50);
    ok(s.calls == 1 && b.calls == 1 && n.calls == 1 && p.calls == 1, "each callback ran once");
    queue_destroy(q);
}

/* Stamps survive a Redis restart (AOF, appendfsync always). */
static void
test_aof_restart(void)
{
    struct queue *q;
    struct queue_write w = wr("m", "h1", 1000);
    struct got g, d;
    struct mutation m;
    char s1[STAMP_TEXT_MAX], s2[STAMP_TEXT_MAX];

    aof.aof = 1;
    harness_start(&aof);
    q = make_queue(aof.port, 2000, 1);
    begin(q, &w, &g);
    run_until(&g.calls, 2000);
    snprintf(s1, sizeof(s1), "%s", g.stamp);
    memset(&m, 0, sizeof(m));
    m.op = MUT_PUT;
    m.bucket = w.bucket;
    m.key = w.key;
    m.stamp = slice_cstr(s1);
    m.vv = SLICE_LIT("a=1");
    m.size = 1;
    memset(&d, 0, sizeof(d));
    queue_commit_local(q, &w, &m, on_done, &d);
    run_until(&d.calls, 2000);
    w.holder = "h2";
    begin(q, &w, &g);
    run_until(&g.calls, 2000);
    snprintf(s2, sizeof(s2), "%s", g.stamp);
    ok(d.err == NULL && strcmp(s1, "0000000003e80000.a") == 0 && strcmp(s2, s1) > 0,
       "two stamps in the same ms: %s < %s", s1, s2);
    harness_kill(&aof);
    run_for(100); /* the queue notices */
    ok(!queue_connected(q), "AOF server killed: disconnected");
    harness_start(&aof);
    ok(wait_connected(q, 3000), "AOF server restarted: reconnected");
    w.holder = "h3";
    begin(q, &w, &g);
    run_until(&g.calls, 2000);
    ok(g.err == NULL && g.verdict == QUEUE_BUSY, "the lease survived the restart too (BUSY)");
    w.holder = "h2";
    begin(q, &w, &g);
    run_until(&g.calls, 2000);
    ok(g.err == NULL && g.verdict == QUEUE_GO && strcmp(g.stamp, s2) > 0,
       "after the restart the next stamp is still greater: %s > %s", g.stamp, s2);
    ok_str(rsync("HGET s3tee:o:bkt/m st"), s1, "the index survived");
    ok_str(rsync("XLEN s3tee:log"), "(int)1", "the log survived");
    queue_destroy(q);
    harness_kill(&aof);
}

/* queue_destroy() with commands pending: queue_err_shutdown once each. */
static struct queue *reentry_q;
static int reentry_rc;

static void
on_shutdown_reenter(void *arg, const char *err, struct redisReply *r)
{
    struct got p;

    on_raw(arg, err, r);
    reentry_rc = raw(reentry_q, &p, "PING", NULL, NULL);
}

static void
test_destroy_pending(void)
{
    struct queue *q = make_queue(srv.port, 2000, 1);
    struct queue_write w = wr("k3", "h", 1000);
    struct got s, p, b, x;
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};

    ok(queue_connected(q), "destroy test: connected");
    raw(q, &s, "DEBUG", "SLEEP", "0.3");
    raw(q, &p, "PING", NULL, NULL);
    begin(q, &w, &b);
    memset(&x, 0, sizeof(x));
    reentry_q = q;
    queue_command_argv(q, 1, argv, lens, on_shutdown_reenter, &x);
    queue_destroy(q);
    ok(s.calls == 1 && s.err == queue_err_shutdown && p.calls == 1 &&
           p.err == queue_err_shutdown && b.calls == 1 && b.err == queue_err_shutdown &&
           x.calls == 1 && x.err == queue_err_shutdown,
       "every pending command: queue_err_shutdown, inside queue_destroy()");
    ok(reentry_rc == -1, "a call made from a shutdown callback is refused");
    run_for(500);
    ok(s.calls == 1 && p.calls == 1 && b.calls == 1 && x.calls == 1,
       "late replies do not complete them again");

    /* while down: the parked command gets queue_err_shutdown, not unavailable */
    q = make_queue(harness_free_port(), 1000, 0);
    raw(q, &p, "PING", NULL, NULL);
    queue_destroy(q);
    run_for(30);
    ok(p.calls == 1 && p.err == queue_err_shutdown, "parked command: queue_err_shutdown once");
}

/* queue_destroy() from inside a completion callback. */
static struct queue *inner_q;

static void
on_reply_destroy(void *arg, const char *err, struct redisReply *r)
{
    on_raw(arg, err, r);
    queue_destroy(inner_q);
}

static void
test_destroy_in_callback(void)
{
    struct got a, b, c;
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};

    inner_q = make_queue(srv.port, 2000, 1);
    memset(&a, 0, sizeof(a));
    queue_command_argv(inner_q, 1, argv, lens, on_reply_destroy, &a);
    raw(inner_q, &b, "PING", NULL, NULL);
    raw(inner_q, &c, "DEBUG", "SLEEP", "0.1");
    run_until(&a.calls, 2000);
    ok(a.calls == 1 && a.err == NULL && strcmp(a.text, "PONG") == 0, "first reply arrives");
    ok(b.calls == 1 && c.calls == 1 && (b.err == queue_err_shutdown || b.err == NULL) &&
           c.err == queue_err_shutdown,
       "destroyed from its callback: the rest complete (shutdown) at once");
    run_for(300);
    ok(a.calls == 1 && b.calls == 1 && c.calls == 1, "and only once");

    /* from a timeout's completion. The server first finishes the DEBUG SLEEP above (it
     * is single-threaded: a connect during it would itself time out on a slow machine),
     * and the timeout leaves the new queue's connect and script loading room. */
    run_for(200);
    inner_q = make_queue(srv.port, 300, 1);
    memset(&a, 0, sizeof(a));
    {
        const char *sl[3] = {"DEBUG", "SLEEP", "1.2"};
        size_t sll[3] = {5, 5, 3};

        queue_command_argv(inner_q, 3, sl, sll, on_reply_destroy, &a);
    }
    raw(inner_q, &b, "PING", NULL, NULL);
    run_until(&a.calls, 2000);
    ok(a.calls == 1 && a.err == queue_err_timeout, "timed out, destroyed from that callback");
    ok(b.calls == 1 && (b.err == queue_err_shutdown || b.err == queue_err_unavailable),
       "the other in-flight command completed once");
    run_for(1300);
    ok(a.calls == 1 && b.calls == 1, "no second completion");
}

/* A connect that never completes (the listener's accept queue is full) is given up after
 * command_timeout_ms and retried; commands meanwhile fail at once. */
static void
test_connect_hang(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), filler = socket(AF_INET, SOCK_STREAM, 0);
    char logpath[] = "/tmp/s3tee-queue-log-XXXXXX", buf[8192];
    int logfd = mkstemp(logpath);
    struct queue *q;
    struct got g;
    ssize_t n;
    int64_t t0;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(lfd, (struct sockaddr *)&a, sizeof(a));
    listen(lfd, 0);
    getsockname(lfd, (struct sockaddr *)&a, &len);
    fcntl(filler, F_SETFL, O_NONBLOCK);
    connect(filler, (struct sockaddr *)&a, sizeof(a)); /* fills the accept queue */
    run_for(50);
    log_open(logpath);
    q = make_queue(ntohs(a.sin_port), 150, 0);
    run_for(400);
    ok(!queue_connected(q), "hanging connect: not connected");
    t0 = timeutil_mono_ms();
    raw(q, &g, "PING", NULL, NULL);
    run_until(&g.calls, 1000);
    ok(g.calls == 1 && g.err == queue_err_unavailable && g.at_ms - t0 < 100,
       "commands fail at once while connecting (%lld ms)", (long long)(g.at_ms - t0));
    queue_destroy(q);
    run_for(20);
    log_open(NULL);
    n = read(logfd, buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    ok(strstr(buf, "connect timed out") != NULL, "the connect timer gave up on it");
    close(logfd);
    unlink(logpath);
    close(filler);
    close(lfd);
}

int
main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    harness_evb = event_base_new();
    test_late_start();
    test_timeout();
    test_killed();
    test_aof_restart();
    test_destroy_pending();
    test_destroy_in_callback();
    test_connect_hang();
    run_for(20);
    event_base_free(harness_evb);
    return done_testing();
}
