/*
 * rconn.c - one Redis connection: hiredis 0.14 async on libevent, our per-command timers,
 * reconnect, scripts (see rconn.h for the completion contract).
 *
 *   DOWN --reconnect_ev--> CONNECTING --on_connect(OK)--> CONNECTED
 *     ^                        |  on_connect(ERR), connect_ev     |  EOF/error (NULL replies,
 *     +------------------------+----------------------------------+  on_disconnect), a command
 *                                                                    timer (we free the context)
 *
 * Commands live in one of two lists until they complete: INFLIGHT (handed to hiredis, timer
 * running) or FAILQ (issued while not CONNECTED; completed by fail_ev on the next loop turn).
 * A command hiredis still holds (in_hiredis) outlives its completion: hiredis calls on_reply
 * once for it - with the reply, or NULL while freeing the context - and that frees it.
 *
 * Completion callbacks may call rconn_destroy(): DEPTH counts our frames that still use RC
 * after a callback returns, and the last one to leave frees RC (through a zero timer when
 * hiredis is on the stack, so hiredis never frees a context from inside its own callback).
 */
#include "queue/rconn.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "queue/queue.h"

enum rc_state { RC_DOWN = 0, RC_CONNECTING, RC_CONNECTED };

TAILQ_HEAD(rcmd_list, rcmd);

struct rcmd {
    TAILQ_ENTRY(rcmd) link;  /* in *list until completed */
    struct rcmd_list *list;  /* &rc->inflight or &rc->failq; NULL once completed */
    struct rconn *rc;        /* owner; not used after completion */
    rconn_cb cb;             /* completion, may be NULL */
    void *arg;               /* for CB */
    struct event *timer;     /* per-command timeout while in flight (owned) */
    int64_t timeout_ms;      /* its length */
    long script;             /* script index, or -1 for a plain command */
    int nkeys;               /* scripts: how many of ARGV are keys */
    int argc;                /* entries in argv/argvlen */
    const char **argv;       /* copies, in the same allocation as the struct */
    size_t *argvlen;         /* lengths of argv */
    unsigned in_hiredis : 1; /* hiredis holds this as a callback's privdata */
    unsigned retried : 1;    /* a NOSCRIPT reply was answered with EVAL already */
};

struct rscript {
    const char *body; /* Lua source (borrowed from the opts) */
    char sha[41];     /* SHA1 from SCRIPT LOAD, "" until known */
};

struct rconn {
    struct event_base *evb;    /* loop (borrowed) */
    char *host;                /* redis host (owned) */
    int port;                  /* redis port */
    int64_t timeout_ms;        /* default command timeout, also bounds a connect */
    int64_t reconnect_ms;      /* delay before a reconnect */
    struct rscript *scripts;   /* nscripts entries (owned) */
    size_t nscripts;           /* scripts registered */
    redisAsyncContext *ac;     /* current context (ac->data == this), NULL when DOWN */
    enum rc_state state;       /* see diagram */
    struct rcmd_list inflight; /* sent, awaiting a reply */
    struct rcmd_list failq;    /* to fail on the next loop turn */
    struct event *reconnect_ev;/* DOWN -> CONNECTING */
    struct event *connect_ev;  /* connect timeout */
    struct event *fail_ev;     /* completes FAILQ */
    int depth;                 /* our frames on the stack that use RC after a callback */
    int in_hiredis;            /* of those, frames called by hiredis */
    unsigned dying : 1;        /* rconn_destroy() was called */
    unsigned free_scheduled:1; /* final_free() waits on a zero timer */
    unsigned was_up : 1;       /* connected at least once since the last "down" log */
    unsigned logged_down : 1;  /* a failure was logged since the last success */
};

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);
static void rc_connect(struct rconn *rc);

static void
ms_to_tv(int64_t ms, struct timeval *tv)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

static struct rcmd *
cmd_new(struct rconn *rc, long script, int nkeys, int argc, const char **argv, const size_t *lens,
        rconn_cb cb, void *arg)
{
    size_t bytes = 0, hdr = sizeof(struct rcmd) + (size_t)argc * (sizeof(size_t) + sizeof(char *));
    struct rcmd *cmd;
    char *p;
    int i;

    for (i = 0; i < argc; i++) {
        bytes += lens[i] + 1;
    }
    cmd = xcalloc(1, hdr + bytes);
    cmd->rc = rc;
    cmd->cb = cb;
    cmd->arg = arg;
    cmd->script = script;
    cmd->nkeys = nkeys;
    cmd->argc = argc;
    cmd->argvlen = (size_t *)(cmd + 1);
    cmd->argv = (const char **)(cmd->argvlen + argc);
    p = (char *)(cmd->argv + argc);
    for (i = 0; i < argc; i++) {
        if (lens[i] > 0) {
            memcpy(p, argv[i], lens[i]);
        }
        p[lens[i]] = '\0';
        cmd->argv[i] = p;
        cmd->argvlen[i] = lens[i];
        p += lens[i] + 1;
    }
    return cmd;
}

/* Hands CMD to hiredis on RC->ac (EVAL instead of EVALSHA when FORCE_EVAL). 0 or -1. */
static int
cmd_send(struct rconn *rc, struct rcmd *cmd, int force_eval)
{
    const char **v = cmd->argv;
    size_t *l = cmd->argvlen;
    int n = cmd->argc, rv;
    char nk[16];

    if (cmd->script >= 0) {
        const struct rscript *s = &rc->scripts[cmd->script];
        int sha = !force_eval && s->sha[0] != '\0';

        n = cmd->argc + 3;
        v = xmalloc((size_t)n * sizeof(*v));
        l = xmalloc((size_t)n * sizeof(*l));
        v[0] = sha ? "EVALSHA" : "EVAL";
        v[1] = sha ? s->sha : s->body;
        v[2] = nk;
        l[0] = strlen(v[0]);
        l[1] = strlen(v[1]);
        l[2] = (size_t)snprintf(nk, sizeof(nk), "%d", cmd->nkeys);
        memcpy(v + 3, cmd->argv, (size_t)cmd->argc * sizeof(*v));
        memcpy(l + 3, cmd->argvlen, (size_t)cmd->argc * sizeof(*l));
    }
    /* hiredis formats the command into its output buffer here: V may go right after */
    rv = redisAsyncCommandArgv(rc->ac, on_reply, cmd, n, v, l);
    if (cmd->script >= 0) {
        free(v);
        free(l);
    }
    if (rv != REDIS_OK) {
        return -1;
    }
    cmd->in_hiredis = 1;
    return 0;
}

static void
cmd_unlink(struct rcmd *cmd)
{
    if (cmd->list != NULL) {
        TAILQ_REMOVE(cmd->list, cmd, link);
        cmd->list = NULL;
    }
    if (cmd->timer != NULL) {
        event_free(cmd->timer);
        cmd->timer = NULL;
    }
}

/* Calls CMD's callback (once: CMD leaves its list first) and frees CMD unless hiredis holds it. */
static void
cmd_complete(struct rcmd *cmd, const char *errstr, redisReply *reply)
{
    cmd_unlink(cmd);
    cmd->rc = NULL;
    if (cmd->cb != NULL) {
        rconn_cb cb = cmd->cb;

        cmd->cb = NULL;
        cb(cmd->arg, errstr, reply);
    }
    if (!cmd->in_hiredis) {
        free(cmd);
    }
}

static void
final_free(struct rconn *rc)
{
    redisAsyncContext *ac = rc->ac;

    assert(rc->in_hiredis == 0);
    if (ac != NULL) {
        rc->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac); /* its commands are complete: on_reply only frees them */
    }
    event_free(rc->reconnect_ev);
    event_free(rc->connect_ev);
    event_free(rc->fail_ev);
    free(rc->scripts);
    free(rc->host);
    free(rc);
}

static void
on_final_free(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    final_free(arg);
}

static void
enter(struct rconn *rc, int from_hiredis)
{
    rc->depth++;
    rc->in_hiredis += from_hiredis;
}

/* Leaves one of our frames; frees RC when it was destroyed meanwhile and this is the last. */
static void
leave(struct rconn *rc, int from_hiredis)
{
    rc->in_hiredis -= from_hiredis;
    if (--rc->depth > 0 || !rc->dying || rc->free_scheduled) {
        return;
    }
    if (rc->in_hiredis > 0 || from_hiredis) {
        struct timeval zero = {0, 0};

        rc->free_scheduled = 1;
        if (event_base_once(rc->evb, -1, EV_TIMEOUT, on_final_free, rc, &zero) != 0) {
            log_error("queue", "redis: cannot schedule the connection's release");
        }
        return;
    }
    final_free(rc);
}

static void
schedule_reconnect(struct rconn *rc)
{
    struct timeval tv;

    if (rc->dying) {
        return;
    }
    ms_to_tv(rc->reconnect_ms, &tv);
    evtimer_add(rc->reconnect_ev, &tv);
}

static void
log_down(struct rconn *rc, const char *why)
{
    if (rc->was_up || !rc->logged_down) {
        log_warn("queue", "redis %s:%d unavailable: %s (retrying every %lldms)", rc->host, rc->port,
                 why, (long long)rc->reconnect_ms);
    }
    rc->was_up = 0;
    rc->logged_down = 1;
}

/*
 * The connection is gone: every in-flight command completes (TIMED with queue_err_timeout,
 * the rest with queue_err_unavailable, or queue_err_shutdown once dying), the context is
 * freed here unless HIREDIS_FREES (hiredis is freeing it already), and a reconnect is due.
 */
static void
conn_lost(struct rconn *rc, int hiredis_frees, struct rcmd *timed, const char *why)
{
    redisAsyncContext *ac = rc->ac;
    struct rcmd *cmd;

    rc->ac = NULL;
    rc->state = RC_DOWN;
    if (ac != NULL) {
        ac->data = NULL; /* its late callbacks are no longer ours */
    }
    evtimer_del(rc->connect_ev);
    if (!rc->dying) {
        log_down(rc, why);
    }
    enter(rc, 0);
    while ((cmd = TAILQ_FIRST(&rc->inflight)) != NULL) {
        cmd_complete(cmd, cmd == timed       ? queue_err_timeout
                          : rc->dying ? queue_err_shutdown
                                      : queue_err_unavailable,
                     NULL);
    }
    if (ac != NULL && !hiredis_frees) {
        assert(rc->in_hiredis == 0);
        redisAsyncFree(ac); /* on_reply(NULL) frees the completed commands */
    }
    schedule_reconnect(rc);
    leave(rc, 0);
}

static void
on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct rcmd *cmd = privdata;
    redisReply *reply = r;
    struct rconn *rc = cmd->rc;

    cmd->in_hiredis = 0;
    if (rc == NULL) {
        free(cmd); /* completed earlier (timeout, loss, shutdown): hiredis let go of it now */
        return;
    }
    enter(rc, 1);
    if (reply == NULL) {
        /* hiredis frees AC after an error: every command on it is lost */
        if (ac->data == rc) {
            conn_lost(rc, 1, NULL, ac->errstr[0] ? ac->errstr : "connection lost");
        } else {
            cmd_complete(cmd, queue_err_unavailable, NULL);
        }
    } else if (reply->type == REDIS_REPLY_ERROR && cmd->script >= 0 && !cmd->retried &&
               strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        cmd->retried = 1; /* Redis lost its script cache (restart, SCRIPT FLUSH) */
        if (cmd_send(rc, cmd, 1) != 0) {
            cmd_complete(cmd, queue_err_unavailable, NULL);
        }
    } else {
        cmd_complete(cmd, reply->type == REDIS_REPLY_ERROR ? queue_err_reply : NULL, reply);
    }
    leave(rc, 1);
}

static void
on_script_loaded(void *arg, const char *errstr, struct redisReply *reply)
{
    struct rscript *s = arg;

    if (errstr == NULL && reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(s->sha, reply->str, 40);
        s->sha[40] = '\0';
    } else if (errstr == queue_err_reply) {
        log_error("queue", "redis refused a script: %.*s", (int)reply->len, reply->str);
    }
}

static void
on_connect(const redisAsyncContext *cac, int status)
{
    struct rconn *rc = cac->data;
    size_t i;

    if (rc == NULL) {
        return;
    }
    evtimer_del(rc->connect_ev);
    if (status != REDIS_OK) {
        rc->ac = NULL; /* hiredis frees it when we return */
        rc->state = RC_DOWN;
        if (!rc->dying) {
            log_down(rc, cac->errstr[0] ? cac->errstr : "connect failed");
        }
        schedule_reconnect(rc);
        return;
    }
    rc->state = RC_CONNECTED;
    if (rc->dying) {
        return;
    }
    if (rc->logged_down) {
        log_info("queue", "redis %s:%d connected", rc->host, rc->port);
    }
    rc->was_up = 1;
    rc->logged_down = 0;
    for (i = 0; i < rc->nscripts; i++) {
        const char *argv[3] = {"SCRIPT", "LOAD", rc->scripts[i].body};
        size_t lens[3] = {6, 4, strlen(rc->scripts[i].body)};

        rconn_command(rc, 0, 3, argv, lens, on_script_loaded, &rc->scripts[i]);
    }
}

static void
on_disconnect(const redisAsyncContext *cac, int status)
{
    struct rconn *rc = cac->data;

    (void)status;
    if (rc == NULL) {
        return; /* a context we had already given up */
    }
    enter(rc, 1);
    conn_lost(rc, 1, NULL, cac->errstr[0] ? cac->errstr : "disconnected");
    leave(rc, 1);
}

static void
on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct rconn *rc = arg;

    (void)fd;
    (void)what;
    if (rc->state == RC_CONNECTING) {
        conn_lost(rc, 0, NULL, "connect timed out");
    }
}

static void
on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rc_connect(arg);
}

static void
rc_connect(struct rconn *rc)
{
    redisAsyncContext *ac;
    struct timeval tv;

    if (rc->dying || rc->ac != NULL) {
        return;
    }
    ac = redisAsyncConnect(rc->host, rc->port);
    if (ac == NULL || ac->err) {
        log_down(rc, ac ? ac->errstr : "out of memory");
        if (ac != NULL) {
            redisAsyncFree(ac);
        }
        schedule_reconnect(rc);
        return;
    }
    ac->data = rc;
    if (redisLibeventAttach(ac, rc->evb) != REDIS_OK) {
        log_down(rc, "cannot attach to the event loop");
        redisAsyncFree(ac);
        schedule_reconnect(rc);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rc->ac = ac;
    rc->state = RC_CONNECTING;
    ms_to_tv(rc->timeout_ms, &tv);
    evtimer_add(rc->connect_ev, &tv);
}

static void
on_cmd_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct rcmd *cmd = arg;
    struct rconn *rc = cmd->rc;

    (void)fd;
    (void)what;
    log_warn("queue", "redis %s:%d: %s timed out after %lldms; reconnecting", rc->host, rc->port,
             cmd->script >= 0 ? "script" : cmd->argv[0], (long long)cmd->timeout_ms);
    conn_lost(rc, 0, cmd, "command timed out");
}

static void
on_fail(evutil_socket_t fd, short what, void *arg)
{
    struct rconn *rc = arg;
    struct rcmd *cmd;
    size_t n = 0;

    (void)fd;
    (void)what;
    TAILQ_FOREACH(cmd, &rc->failq, link) {
        n++;
    }
    /* only those parked before this turn: a callback that retries at once waits a turn */
    enter(rc, 0);
    while (n-- > 0 && (cmd = TAILQ_FIRST(&rc->failq)) != NULL) {
        cmd_complete(cmd, rc->dying ? queue_err_shutdown : queue_err_unavailable, NULL);
    }
    leave(rc, 0);
}

/* Sends CMD now, or parks it on FAILQ when not connected. */
static void
submit(struct rconn *rc, struct rcmd *cmd)
{
    struct timeval tv;

    if (rc->state != RC_CONNECTED || rc->ac == NULL || cmd_send(rc, cmd, 0) != 0) {
        TAILQ_INSERT_TAIL(&rc->failq, cmd, link);
        cmd->list = &rc->failq;
        event_active(rc->fail_ev, EV_TIMEOUT, 1);
        return;
    }
    TAILQ_INSERT_TAIL(&rc->inflight, cmd, link);
    cmd->list = &rc->inflight;
    cmd->timer = evtimer_new(rc->evb, on_cmd_timeout, cmd);
    ms_to_tv(cmd->timeout_ms, &tv);
    evtimer_add(cmd->timer, &tv);
}

struct rconn *
rconn_create(struct event_base *evb, const struct rconn_opts *o)
{
    struct rconn *rc = xcalloc(1, sizeof(*rc));
    size_t i;

    rc->evb = evb;
    rc->host = xstrdup(o->host ? o->host : "127.0.0.1");
    rc->port = o->port;
    rc->timeout_ms = o->command_timeout_ms > 0 ? o->command_timeout_ms : 1000;
    rc->reconnect_ms = o->reconnect_ms > 0 ? o->reconnect_ms : 500;
    rc->nscripts = o->nscripts;
    rc->scripts = xcalloc(o->nscripts ? o->nscripts : 1, sizeof(*rc->scripts));
    for (i = 0; i < o->nscripts; i++) {
        rc->scripts[i].body = o->scripts[i];
    }
    TAILQ_INIT(&rc->inflight);
    TAILQ_INIT(&rc->failq);
    rc->reconnect_ev = evtimer_new(evb, on_reconnect, rc);
    rc->connect_ev = evtimer_new(evb, on_connect_timeout, rc);
    rc->fail_ev = event_new(evb, -1, 0, on_fail, rc);
    rc_connect(rc);
    return rc;
}

void
rconn_destroy(struct rconn *rc)
{
    struct rcmd *cmd;

    if (rc == NULL || rc->dying) {
        return;
    }
    rc->dying = 1;
    evtimer_del(rc->reconnect_ev);
    evtimer_del(rc->connect_ev);
    event_del(rc->fail_ev);
    enter(rc, 0);
    while ((cmd = TAILQ_FIRST(&rc->inflight)) != NULL ||
           (cmd = TAILQ_FIRST(&rc->failq)) != NULL) {
        cmd_complete(cmd, queue_err_shutdown, NULL);
    }
    leave(rc, 0);
}

int
rconn_connected(const struct rconn *rc)
{
    return rc != NULL && rc->state == RC_CONNECTED && !rc->dying;
}

int
rconn_command(struct rconn *rc, int64_t timeout_ms, int argc, const char **argv,
              const size_t *argvlen, rconn_cb cb, void *arg)
{
    struct rcmd *cmd;

    if (rc == NULL || rc->dying || argc <= 0) {
        return -1;
    }
    cmd = cmd_new(rc, -1, 0, argc, argv, argvlen, cb, arg);
    cmd->timeout_ms = timeout_ms > 0 ? timeout_ms : rc->timeout_ms;
    submit(rc, cmd);
    return 0;
}

int
rconn_eval(struct rconn *rc, size_t script, int nkeys, int nargs, const char **args,
           const size_t *lens, rconn_cb cb, void *arg)
{
    struct rcmd *cmd;

    if (rc == NULL || rc->dying || script >= rc->nscripts || nkeys < 0 || nargs < nkeys) {
        return -1;
    }
    cmd = cmd_new(rc, (long)script, nkeys, nargs, args, lens, cb, arg);
    cmd->timeout_ms = rc->timeout_ms;
    submit(rc, cmd);
    return 0;
}
