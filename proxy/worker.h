/*
 * worker.h - one thread: an event loop with its own listeners (SO_REUSEPORT), client
 * connections, a pool of store connections and a signing-key cache. Nothing here is shared
 * between workers except the server (struct server) they were started from.
 */
#ifndef S3TEE_PROXY_WORKER_H
#define S3TEE_PROXY_WORKER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/time.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "proxy/conf.h"
#include "signing/sigv4.h"

struct event;
struct evconnlistener;
struct upstream;
struct conn;
struct server;

struct worker {
    int id;                          /* 0..n-1, for logs and request ids */
    pthread_t thread;                /* joined by server_run() */
    struct server *srv;              /* the process-wide parts (borrowed) */
    struct event_base *evb;          /* this thread's loop (owned) */
    struct evconnlistener **listeners; /* one per configured listen (owned) */
    void **listen_args;              /* callback argument of each listener (owned) */
    size_t nlisteners;
    struct proxy_conf *cf;           /* current config (one ref held); swapped on reload */
    struct upstream *up;             /* store connections (owned) */
    struct queue *q;                 /* the site's Redis; NULL without site_id (owned) */
    struct sigv4_key_cache keys;     /* derived signing keys of this thread */
    TAILQ_HEAD(, conn) conns;        /* open client connections */
    int nconns;                      /* length of conns */
    struct event *reload_ev;         /* activated by the main thread on SIGHUP */
    struct event *stop_ev;           /* activated by the main thread on SIGTERM */
    struct event *drain_timer;       /* bounds the drain after stop */
    int draining;                    /* no new connections or requests; exit when idle */
    uint64_t next_req_id;            /* request id counter */
};

struct server {
    struct proxy_conf *cf;           /* newest config (ref held); guarded by lock */
    pthread_mutex_t lock;            /* guards cf */
    SSL_CTX *ssl_ctx;                /* for listen_tls; shared, read-only after start */
    struct worker *workers;          /* array of nworkers */
    int nworkers;
    int access_log_fd;               /* -1 when off */
    uint32_t boot_id;                /* random per process, prefixes request ids */
};

/* Returns a ref on the server's current config (release with proxy_conf_unref). */
struct proxy_conf *server_conf(struct server *srv);
/* Makes a fresh request id "<boot><worker><counter>" (17 chars + NUL) in OUT. */
void worker_request_id(struct worker *w, char out[24]);
/* The loop's cached time in milliseconds (one clock read per loop turn), for timeouts and
 * rates measured on this worker. Inline: it runs for every body read. */
static inline int64_t
worker_now_ms(struct worker *w)
{
    struct timeval tv;

    event_base_gettimeofday_cached(w->evb, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}
/* Connection bookkeeping used by conn.c. */
void worker_conn_added(struct worker *w, struct conn *c);
void worker_conn_removed(struct worker *w, struct conn *c);

/* Main-thread side (main.c). worker_init binds the listeners, so a bad address fails
 * before any thread starts; ERR gets the reason. */
int worker_init(struct worker *w, struct server *srv, int id, char *err, size_t errlen);
int worker_start(struct worker *w);
/* After the thread was joined: frees everything the worker owns. */
void worker_deinit(struct worker *w);
#endif
