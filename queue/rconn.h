/*
 * rconn.h - one Redis connection for queue.c: hiredis 0.14 async on libevent, our own timer
 * per command, reconnect every reconnect_ms, scripts loaded on every (re)connect and run
 * with EVALSHA (EVAL when Redis answers NOSCRIPT). Internal to queue/.
 *
 * Every command completes exactly once through its callback, never before the call that
 * issued it returns:
 *   - with the reply (errstr NULL; queue_err_reply with the reply for a Redis error reply),
 *   - queue_err_unavailable when issued while not connected (on the next loop turn), or when
 *     the connection is lost with the command in flight,
 *   - queue_err_timeout for the command whose timer ran out: the connection is then dropped,
 *     the other in-flight commands complete with queue_err_unavailable, and a reconnect is
 *     scheduled,
 *   - queue_err_shutdown from rconn_destroy().
 * hiredis structures are never freed from inside hiredis callbacks.
 */
#ifndef S3TEE_QUEUE_RCONN_H
#define S3TEE_QUEUE_RCONN_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct redisReply;
struct rconn;

struct rconn_opts {
    const char *host;                  /* redis host, copied */
    int port;                          /* redis port */
    int64_t command_timeout_ms;        /* default per-command timeout, also the connect timeout */
    int64_t reconnect_ms;              /* delay before each reconnect attempt */
    const char *const *scripts;        /* Lua bodies (borrowed, must outlive the rconn) */
    size_t nscripts;                   /* entries in SCRIPTS */
};

/* REPLY is valid during the callback only; NULL unless Redis answered. */
typedef void (*rconn_cb)(void *arg, const char *errstr, struct redisReply *reply);

/* Starts connecting at once. rconn_destroy() frees it. */
struct rconn *rconn_create(struct event_base *evb, const struct rconn_opts *o);
/*
 * Completes every pending command with queue_err_shutdown, then frees. Safe from inside a
 * completion callback (the free then waits until the callback returns, or for the next loop
 * turn when hiredis is on the stack).
 */
void rconn_destroy(struct rconn *rc);
/* 1 while connected. */
int rconn_connected(const struct rconn *rc);
/*
 * rconn_command - send ARGV (copied). TIMEOUT_MS 0 means the default. CB may be NULL.
 * Returns 0 (CB will be called once), or -1 when RC is being destroyed (CB is not called).
 */
int rconn_command(struct rconn *rc, int64_t timeout_ms, int argc, const char **argv,
                  const size_t *argvlen, rconn_cb cb, void *arg);
/*
 * rconn_eval - run script number SCRIPT (index into opts.scripts) with NKEYS keys followed by
 * the other arguments in ARGS (NARGS in all, keys first; copied). Same contract as
 * rconn_command().
 */
int rconn_eval(struct rconn *rc, size_t script, int nkeys, int nargs, const char **args,
               const size_t *lens, rconn_cb cb, void *arg);

#endif
