/*
 * resched.c - scheduled and rebuild-triggered resyncs, one child process at a time.
 *
 *   tick (every TICK_MS)
 *     child running?  waitpid(WNOHANG): still running -> wait; exited -> note, next bucket
 *     a run set (one peer, every resync_bucket) in progress? -> start its next bucket,
 *         or finish it: rebuild set that all exited 0 -> DEL s3tee:rebuild:<peer>
 *         (if it still holds the value the set started from)
 *     idle -> a peer marked for rebuild (last EXISTS said so) or due by the interval
 *         -> start its set; then ask Redis again (GET s3tee:rebuild:<peer>, async)
 *
 * The child's stdout (one JSON line per repaired key, then the summary) and stderr go to
 * the replicator's stderr.
 */
#include "replicator/resched.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "queue/queue.h"
#include "replicator/conf.h"

#define TICK_MS 1000
#define RESCHED_RETRY_MS 30000 /* a failed rebuild set waits this long before the next try */
#define REDIS_RETRY_MS 1000

struct rpeer_sched {
    int64_t next_due_ms;     /* monotonic time of the next scheduled set (interval > 0) */
    int64_t retry_at_ms;     /* a failed rebuild is not retried before this */
    char *mark;              /* s3tee:rebuild:<peer> at the last look, NULL none (owned) */
    unsigned asking : 1;     /* GET in flight */
};

struct resched {
    struct event_base *evb;      /* the loop (borrowed) */
    const struct repl_conf *cf;  /* configuration (borrowed) */
    struct queue *q;             /* this site's Redis (owned) */
    struct event *tick;          /* TICK_MS timer (owned) */
    char *command;               /* the s3tee binary (owned) */
    struct rpeer_sched *peers;   /* per cf->peers entry (owned) */
    pid_t child;                 /* running resync, 0 none */
    long set_peer;               /* peer of the set in progress, -1 none */
    size_t next_bucket;          /* next bucket of that set */
    int set_rebuild;             /* the set was started by a rebuild mark */
    int set_failed;              /* a run of the set did not exit 0 */
    char *set_mark;              /* rebuild set: the mark it answers (owned) */
};

/* Deletes the mark only if it is still the one the set answered: a peer marked again
 * while the set ran (more writes it missed) keeps its new mark. */
static const char unmark_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                 "  return redis.call('DEL', KEYS[1])\n"
                                 "end\n"
                                 "return 0\n";

static void
on_mark(void *arg, const char *errstr, struct redisReply *reply)
{
    struct rpeer_sched *p = arg;

    p->asking = 0;
    if (errstr == NULL && reply != NULL) {
        free(p->mark);
        p->mark = reply->type == REDIS_REPLY_STRING ? xstrndup(reply->str, (size_t)reply->len)
                                                    : NULL;
    }
}

static void
ask_marks(struct resched *r)
{
    size_t i;

    for (i = 0; i < r->cf->npeers; i++) {
        struct rpeer_sched *p = &r->peers[i];
        char key[128];
        const char *argv[2] = {"GET", key};
        size_t argvlen[2] = {3, 0};

        if (p->asking) {
            continue;
        }
        argvlen[1] = (size_t)snprintf(key, sizeof(key), "s3tee:rebuild:%s", r->cf->peers[i].id);
        if (queue_command_argv(r->q, 2, argv, argvlen, on_mark, p) == 0) {
            p->asking = 1;
        }
    }
}

/* Starts `s3tee resync` for the set's peer and its next bucket; -1 if it could not. */
static int
spawn(struct resched *r)
{
    const char *peer = r->cf->peers[r->set_peer].id;
    const char *bucket = r->cf->resync_buckets[r->next_bucket];
    const char *argv[12];
    int n = 0;
    pid_t pid;

    argv[n++] = r->command;
    argv[n++] = "resync";
    argv[n++] = "-c";
    argv[n++] = r->cf->path;
    argv[n++] = "--peer";
    argv[n++] = peer;
    argv[n++] = "--bucket";
    argv[n++] = bucket;
    if (r->cf->resync_proxy != NULL) {
        argv[n++] = "--proxy";
        argv[n++] = r->cf->resync_proxy;
    }
    argv[n] = NULL;
    pid = fork();
    if (pid < 0) {
        log_error("resync", "cannot start resync with peer %s for bucket=%s: fork: %s", peer,
                  bucket, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        dup2(2, 1); /* its report goes where our stderr goes */
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "s3tee-replicator: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    log_info("resync", "started %s resync with peer %s for bucket=%s (pid %ld)",
             r->set_rebuild ? "rebuild" : "scheduled", peer, bucket, (long)pid);
    r->child = pid;
    return 0;
}

static void
finish_set(struct resched *r, int64_t now)
{
    struct rpeer_sched *p = &r->peers[r->set_peer];
    const char *peer = r->cf->peers[r->set_peer].id;

    if (r->cf->resync_interval_ms > 0) {
        p->next_due_ms = now + r->cf->resync_interval_ms;
    }
    if (r->set_rebuild && !r->set_failed) {
        char key[128];
        const char *argv[5] = {"EVAL", unmark_lua, "1", key, r->set_mark};
        size_t argvlen[5] = {4, strlen(unmark_lua), 1, 0, strlen(r->set_mark)};

        argvlen[3] = (size_t)snprintf(key, sizeof(key), "s3tee:rebuild:%s", peer);
        queue_command_argv(r->q, 5, argv, argvlen, NULL, NULL);
        free(p->mark);
        p->mark = NULL; /* asked again on the next tick */
        log_info("resync", "peer %s rebuilt: every bucket converged; rebuild mark removed", peer);
    } else if (r->set_rebuild) {
        p->retry_at_ms = now + RESCHED_RETRY_MS;
        log_warn("resync", "rebuild of peer %s did not converge; retrying in %ds", peer,
                 RESCHED_RETRY_MS / 1000);
    }
    r->set_peer = -1;
    free(r->set_mark);
    r->set_mark = NULL;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct resched *r = arg;
    int64_t now = timeutil_mono_us() / 1000;
    struct timeval tv = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
    size_t i;

    (void)fd;
    (void)what;
    evtimer_add(r->tick, &tv);
    if (r->child > 0) {
        int st;
        pid_t got = waitpid(r->child, &st, WNOHANG);

        if (got == 0) {
            return; /* still running */
        }
        if (got < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            r->set_failed = 1;
            log_warn("resync", "resync with peer %s for bucket=%s ended with %s %d",
                     r->cf->peers[r->set_peer].id, r->cf->resync_buckets[r->next_bucket],
                     got > 0 && WIFEXITED(st) ? "exit code" : "signal",
                     got > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : got > 0 ? WTERMSIG(st) : -1);
        } else {
            log_info("resync", "resync with peer %s for bucket=%s converged",
                     r->cf->peers[r->set_peer].id, r->cf->resync_buckets[r->next_bucket]);
        }
        r->child = 0;
        r->next_bucket++;
    }
    if (r->set_peer >= 0) {
        if (r->next_bucket < r->cf->nresync_buckets && spawn(r) == 0) {
            return;
        }
        if (r->next_bucket < r->cf->nresync_buckets) {
            r->set_failed = 1; /* could not start it */
        }
        finish_set(r, now);
    }
    for (i = 0; i < r->cf->npeers; i++) {
        struct rpeer_sched *p = &r->peers[i];
        int rebuild = p->mark != NULL && now >= p->retry_at_ms;

        if (rebuild || (r->cf->resync_interval_ms > 0 && now >= p->next_due_ms)) {
            r->set_peer = (long)i;
            r->next_bucket = 0;
            r->set_rebuild = rebuild;
            r->set_failed = 0;
            r->set_mark = rebuild ? xstrdup(p->mark) : NULL;
            if (spawn(r) != 0) {
                r->set_failed = 1;
                finish_set(r, now);
            }
            break;
        }
    }
    ask_marks(r);
}

/* The s3tee binary beside ours, when resync_command is not set. */
static char *
default_command(void)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char *out;

    if (n <= 0) {
        return xstrdup("s3tee");
    }
    self[n] = '\0';
    out = xmalloc(strlen(self) + 8);
    sprintf(out, "%s/s3tee", dirname(self));
    return out;
}

struct resched *
resched_create(struct event_base *evb, const struct repl_conf *cf)
{
    struct resched *r;
    struct queue_opts qo;
    struct timeval tv = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
    int64_t now = timeutil_mono_us() / 1000;
    size_t i;

    if (cf->nresync_buckets == 0) {
        return NULL;
    }
    r = xcalloc(1, sizeof(*r));
    r->evb = evb;
    r->cf = cf;
    r->set_peer = -1;
    r->command = cf->resync_command ? xstrdup(cf->resync_command) : default_command();
    r->peers = xcalloc(cf->npeers, sizeof(*r->peers));
    for (i = 0; i < cf->npeers; i++) {
        r->peers[i].next_due_ms = now + cf->resync_interval_ms;
    }
    memset(&qo, 0, sizeof(qo));
    qo.host = cf->redis_host;
    qo.port = cf->redis_port;
    qo.site_id = cf->site_id;
    qo.command_timeout_ms = cf->command_timeout_ms;
    qo.reconnect_ms = REDIS_RETRY_MS;
    r->q = queue_create(evb, &qo);
    r->tick = evtimer_new(evb, on_tick, r);
    evtimer_add(r->tick, &tv);
    log_info("resync", "resync of %zu bucket(s) every %lldms and on rebuild marks, with %s",
             cf->nresync_buckets, (long long)cf->resync_interval_ms, r->command);
    return r;
}

void
resched_destroy(struct resched *r)
{
    size_t i;

    if (r == NULL) {
        return;
    }
    if (r->child > 0) {
        /* it resumes from its checkpoint next time */
        kill(r->child, SIGTERM);
        waitpid(r->child, NULL, 0);
    }
    event_free(r->tick);
    queue_destroy(r->q); /* fails a GET in flight: on_mark only touches r->peers */
    for (i = 0; i < r->cf->npeers; i++) {
        free(r->peers[i].mark);
    }
    free(r->peers);
    free(r->set_mark);
    free(r->command);
    free(r);
}
