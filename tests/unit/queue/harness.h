/*
 * harness.h - a throwaway redis-server for the queue/ tests: a free loopback port, a temp
 * dir, started and killed by the test (the server dies with the test process, whatever
 * way it ends), a blocking hiredis connection to look at what the scripts wrote, and
 * helpers to run a libevent loop until a condition holds.
 */
#ifndef S3TEE_TEST_QUEUE_HARNESS_H
#define S3TEE_TEST_QUEUE_HARNESS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "common/timeutil.h"

struct redis_srv {
    pid_t pid;     /* running server, 0 when stopped */
    int port;      /* its port (kept across restarts) */
    int aof;       /* appendonly yes, appendfsync always */
    char dir[64];  /* its working dir (AOF files, log) */
};

#define HARNESS_MAX_SRV 4
static struct redis_srv *harness_srv[HARNESS_MAX_SRV];
static struct event_base *harness_evb;
static redisContext *harness_sync; /* blocking connection to the current server */

/* A port that was free a moment ago on 127.0.0.1. */
static inline int
harness_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("harness: free port");
        exit(2);
    }
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static inline void
harness_cleanup(void)
{
    int i;

    if (harness_sync != NULL) {
        redisFree(harness_sync);
        harness_sync = NULL;
    }
    for (i = 0; i < HARNESS_MAX_SRV; i++) {
        struct redis_srv *s = harness_srv[i];
        char cmd[128];

        if (s == NULL) {
            continue;
        }
        if (s->pid > 0) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->pid = 0;
        }
        if (s->dir[0] != '\0' && getenv("HARNESS_KEEP") == NULL) {
            snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
            if (system(cmd) != 0) {
                fprintf(stderr, "harness: could not remove %s\n", s->dir);
            }
        }
        harness_srv[i] = NULL;
    }
}

/* Waits until the server answers PONG (not LOADING). 0 or -1 after 10 s. */
static inline int
harness_wait_ready(struct redis_srv *s)
{
    int64_t end = timeutil_mono_ms() + 10000;

    while (timeutil_mono_ms() < end) {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
        redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
        int up = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;

        if (r != NULL) {
            freeReplyObject(r);
        }
        if (up) {
            if (harness_sync != NULL) {
                redisFree(harness_sync);
            }
            harness_sync = c;
            return 0;
        }
        if (c != NULL) {
            redisFree(c);
        }
        usleep(20000);
    }
    return -1;
}

/* Starts (or restarts, same port and dir) S. Exits the test when it cannot. */
static inline void
harness_start(struct redis_srv *s)
{
    char port[16], log[96];
    int i;

    if (s->port == 0) {
        s->port = harness_free_port();
    }
    if (s->dir[0] == '\0') {
        snprintf(s->dir, sizeof(s->dir), "/tmp/s3tee-queue-test-XXXXXX");
        if (mkdtemp(s->dir) == NULL) {
            perror("harness: mkdtemp");
            exit(2);
        }
        for (i = 0; i < HARNESS_MAX_SRV && harness_srv[i] != NULL && harness_srv[i] != s; i++) {
        }
        if (i == HARNESS_MAX_SRV) {
            fprintf(stderr, "harness: too many servers\n");
            exit(2);
        }
        harness_srv[i] = s;
        if (i == 0) {
            atexit(harness_cleanup);
        }
    }
    snprintf(port, sizeof(port), "%d", s->port);
    snprintf(log, sizeof(log), "%s/redis.log", s->dir);
    s->pid = fork();
    if (s->pid < 0) {
        perror("harness: fork");
        exit(2);
    }
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
               "--save", "", "--appendonly", s->aof ? "yes" : "no", "--appendfsync", "always",
               "--dir", s->dir, "--logfile", log, "--daemonize", "no",
               "--enable-debug-command", "yes", "--protected-mode", "no", (char *)NULL);
        _exit(127);
    }
    if (harness_wait_ready(s) != 0) {
        fprintf(stderr, "harness: redis-server on port %d did not come up (see %s)\n", s->port,
                log);
        exit(2);
    }
}

/* SIGKILLs S (no chance to write anything more). */
static inline void
harness_kill(struct redis_srv *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    if (harness_sync != NULL) {
        redisFree(harness_sync);
        harness_sync = NULL;
    }
}

/* One command on the blocking connection, rendered as text: "PONG", "(nil)", "(int)3",
 * "(err)...", arrays as "[a,b]". The result is in a static buffer. */
static inline void
harness_render(const redisReply *r, char *out, size_t cap)
{
    size_t i, n;

    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        snprintf(out, cap, "%.*s", (int)r->len, r->str);
        break;
    case REDIS_REPLY_ERROR:
        snprintf(out, cap, "(err)%.*s", (int)r->len, r->str);
        break;
    case REDIS_REPLY_INTEGER:
        snprintf(out, cap, "(int)%lld", r->integer);
        break;
    case REDIS_REPLY_NIL:
        snprintf(out, cap, "(nil)");
        break;
    case REDIS_REPLY_ARRAY:
        snprintf(out, cap, "[");
        for (i = 0; i < r->elements; i++) {
            n = strlen(out);
            if (i > 0 && n + 1 < cap) {
                out[n++] = ',';
                out[n] = '\0';
            }
            harness_render(r->element[i], out + n, cap - n);
        }
        n = strlen(out);
        snprintf(out + n, cap - n, "]");
        break;
    default:
        snprintf(out, cap, "(?)");
    }
}

static inline const char *
rsync(const char *fmt, ...)
{
    static char out[8192];
    redisReply *r;
    va_list ap;

    if (harness_sync == NULL) {
        return "(no connection)";
    }
    va_start(ap, fmt);
    r = redisvCommand(harness_sync, fmt, ap);
    va_end(ap);
    if (r == NULL) {
        return "(io error)";
    }
    harness_render(r, out, sizeof(out));
    freeReplyObject(r);
    return out;
}

static inline void
harness_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Runs the loop until *FLAG becomes non-zero or MS pass; returns *FLAG != 0. */
static inline int
run_until(const int *flag, int64_t ms)
{
    int expired = 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    struct event *t = evtimer_new(harness_evb, harness_on_deadline, &expired);

    evtimer_add(t, &tv);
    while (!*flag && !expired) {
        event_base_loop(harness_evb, EVLOOP_ONCE);
    }
    event_free(t);
    return *flag != 0;
}

/* Runs the loop for MS. */
static inline void
run_for(int64_t ms)
{
    int never = 0;

    run_until(&never, ms);
}

#endif
