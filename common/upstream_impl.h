/*
 * upstream_impl.h - what upstream.c (our own HTTP/1.1 client on the worker loop),
 * upstream_tls.c (its TLS layer, OpenSSL) and upstream_curl.c (libcurl's multi interface)
 * share. Not for other modules: the public contract is upstream.h.
 *
 * Why our own client: a store next to the proxy is asked on every request of the hot path,
 * and a replicator writes to a peer's proxy for every object; libcurl's per-transfer work
 * (easy handle setup, URL parsing, header slists, a liveness poll(), socket
 * re-registration, headers and body sent as two records) cost more CPU than our own work
 * (tests/bench/README.md). Requests always have the same shape: method, path, signed
 * headers, a Content-Length body. libcurl remains for base URLs with a path prefix.
 */
#ifndef S3TEE_COMMON_UPSTREAM_IMPL_H
#define S3TEE_COMMON_UPSTREAM_IMPL_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <openssl/ssl.h>

#include "common/upstream.h"

#define UPSTREAM_SPARE_HANDLES 64
#define UPSTREAM_SPARE_PIPES 8

struct upconn;
struct upstream_sink;

enum upstream_xstate {
    XS_LIVE,  /* in u->live: callbacks may run */
    XS_DONE,  /* in u->done: finished, on_done(done_err) is due from reap_ev */
    XS_DEAD,  /* in u->dead: aborted, freed by reap_ev without a callback */
};

enum upstream_rstate {
    RS_HEAD,        /* status line and headers (1xx heads are skipped) */
    RS_BODY_LEN,    /* Content-Length body, resp_left bytes to go */
    RS_CHUNK_SIZE,  /* chunked: the size line */
    RS_CHUNK_DATA,  /* chunked: resp_left bytes of the chunk */
    RS_CHUNK_END,   /* chunked: the CRLF after a chunk */
    RS_TRAILERS,    /* chunked: trailer lines until the empty one */
    RS_BODY_EOF,    /* no length: the body ends when the store closes */
    RS_DONE,
};

struct upstream {
    struct event_base *evb;              /* worker loop (borrowed) */
    struct event *reap_ev;               /* frees aborted transfers, runs due on_done calls */
    TAILQ_HEAD(, upstream_xfer) live;    /* transfers running */
    TAILQ_HEAD(, upstream_xfer) dead;    /* aborted, waiting for reap_ev */
    TAILQ_HEAD(, upstream_xfer) done;    /* finished, on_done waiting for reap_ev */
    int64_t connect_timeout_ms;          /* per connection attempt */
    int max_idle;                        /* kept-alive connections kept */
    int use_curl;                        /* a path prefix: the transfers go through libcurl */
    /* our own client (upstream.c, upstream_tls.c) */
    char *host;                          /* host name or address, no brackets (owned) */
    char *port;                          /* service, "80" by default (owned) */
    struct sockaddr_storage addr;        /* resolved store address */
    socklen_t addrlen;                   /* 0: not resolved (yet) */
    int64_t resolved_us;                 /* when addr was resolved (re-resolved after 60 s) */
    TAILQ_HEAD(, upconn) idle;           /* kept-alive connections, most recent first */
    int nidle;                           /* connections in idle */
    int spare_pipes[UPSTREAM_SPARE_PIPES][2]; /* empty pipes kept for the next splice */
    int nspare_pipes;                    /* pipes in spare_pipes */
    int tls;                             /* https: connections speak TLS */
    SSL_CTX *tls_ctx;                    /* NULL if it could not be made (owned) */
    SSL_SESSION *tls_session;            /* newest session, resumed by new connections (owned) */
    int tls_verify;                      /* verify the server's certificate and name */
    /* https (upstream_curl.c) */
    CURLM *multi;                        /* owns libcurl's connection pool */
    struct event *timer;                 /* curl's single timeout */
    char *base_url;                      /* "https://host:port" without trailing '/' (owned) */
    char *ca_file;                       /* CA bundle or NULL (owned) */
    CURL *spare[UPSTREAM_SPARE_HANDLES]; /* reset easy handles kept for the next transfers */
    int nspare;                          /* handles in spare */
};

struct upstream_xfer {
    struct upstream *u;                  /* owner (borrowed) */
    const struct upstream_xfer_ops *ops; /* callbacks (borrowed) */
    void *arg;                           /* callback argument (borrowed) */
    TAILQ_ENTRY(upstream_xfer) link;     /* in u->live, u->done or u->dead (xstate says) */
    enum upstream_xstate xstate;         /* which list */
    const char *done_err;                /* XS_DONE: the on_done argument */
    int64_t start_us;                    /* when upstream_start() ran */
    int64_t first_byte_us;               /* head received, relative to start */
    int status;                          /* status of the head being read */
    unsigned send_paused : 1;            /* read_body returned UPSTREAM_PAUSE */
    unsigned recv_paused : 1;            /* on_body returned 1 */
    unsigned aborted : 1;                /* upstream_abort() called; no more callbacks */
    unsigned head_done : 1;              /* on_head() called */
    /* plain http */
    struct upconn *c;                    /* the connection, NULL once detached (owned while set) */
    char *head;                          /* request head, kept to resend it on a fresh
                                          * connection when a kept-alive one was stale (owned) */
    size_t head_len;                     /* bytes in head */
    int64_t body_left;                   /* request body bytes read_body has still to give */
    int64_t resp_left;                   /* body or chunk bytes still to come */
    enum upstream_rstate rs;             /* response parser state */
    struct upstream_sink *sink;          /* body spliced to the caller's socket (owned) */
    unsigned is_head : 1;                /* HEAD: the response has no body */
    unsigned chunked : 1;                /* response is Transfer-Encoding: chunked */
    unsigned has_length : 1;             /* response had Content-Length */
    unsigned keep : 1;                   /* the store allows reusing the connection */
    unsigned got_bytes : 1;              /* any response byte arrived */
    unsigned pulled : 1;                 /* read_body gave bytes: the request cannot be resent */
    unsigned retried : 1;                /* already resent once on a fresh connection */
    unsigned write_broken : 1;           /* sending failed; the answer may still be readable */
    unsigned sink_declined : 1;          /* sink_fd said UPSTREAM_SINK_NONE */
    /* https */
    CURL *easy;                          /* owned while set; recycled in upstream_curl_release() */
    struct curl_slist *hdrs;             /* request headers (owned) */
};

/* upstream.c: the transfer is over; queue on_done(ERR) (or nothing, if it was aborted) for
 * reap_ev and release what the transport holds. */
void upstream_xfer_finish(struct upstream_xfer *x, const char *err);
int64_t upstream_now_us(void);

/* upstream_tls.c. Reads and writes answer like readv/sendmsg: bytes, 0 at the end of the
 * stream (read), or -1 with errno EAGAIN (and *WANT_WRITE: which way the socket must become
 * ready) or another errno. */
/* 0, or -1 (logged) when the context or the CA bundle fails: every connection then fails. */
int upstream_tls_init(struct upstream *u, const struct upstream_opts *o);
void upstream_tls_deinit(struct upstream *u);
/* A client SSL for the connected FD (SNI and name or address check set); NULL on failure. */
SSL *upstream_tls_new(struct upstream *u, int fd);
/* 1 done, 0 waiting for the socket (*WANT_WRITE says which way), -1 failed (logged). */
int upstream_tls_handshake(struct upstream *u, SSL *ssl, int *want_write);
ssize_t upstream_tls_read(SSL *ssl, void *buf, size_t len, int *want_write);
ssize_t upstream_tls_write(SSL *ssl, const void *buf, size_t len, int *want_write);
/* Frees SSL (NULL is fine); ORDERLY sends close_notify first. */
void upstream_tls_free(SSL *ssl, int orderly);

/* upstream_curl.c */
void upstream_curl_init(struct upstream *u, const struct upstream_opts *o);
void upstream_curl_deinit(struct upstream *u);
/* 0, or -1 if libcurl refused the handle (X untouched by curl then). */
int upstream_curl_start(struct upstream_xfer *x, const struct upstream_xfer_args *a);
/* Re-applies send_paused / recv_paused. */
void upstream_curl_pause(struct upstream_xfer *x);
/* Takes X's easy handle out of the multi and keeps it for reuse. */
void upstream_curl_release(struct upstream_xfer *x);

#endif
