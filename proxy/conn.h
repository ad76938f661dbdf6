/*
 * conn.h - one client connection: accept, optional TLS handshake, then protocol selection
 * (ALPN "h2", the h2c prior-knowledge preface, or HTTP/1.1) and hand-over to h1.c / h2.c.
 */
#ifndef S3TEE_PROXY_CONN_H
#define S3TEE_PROXY_CONN_H

#include <sys/queue.h>

#include <event2/util.h>

struct bufferevent;
struct worker;
struct h1_conn;
struct h2_conn;

enum conn_proto { CONN_SNIFF = 0, CONN_H1, CONN_H2 };

struct conn {
    struct worker *w;               /* owning worker (borrowed) */
    struct bufferevent *bev;        /* socket or OpenSSL filter (owned; frees the fd) */
    char peer[64];                  /* "ip:port" of the client, for logs */
    int tls;                        /* accepted on a listen_tls socket */
    enum conn_proto proto;          /* decided after TLS / first bytes */
    struct h1_conn *h1;             /* protocol state when proto == CONN_H1 (owned) */
    struct h2_conn *h2;             /* protocol state when proto == CONN_H2 (owned) */
    struct event *sniff_timer;      /* header timeout until the protocol is known */
    TAILQ_ENTRY(conn) link;         /* in worker->conns */
    unsigned closing : 1;           /* conn_close() called; freed from the event loop */
};

/* Takes ownership of FD (accepted, non-blocking). TLS when the listener is listen_tls. */
void conn_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, int tls);
/* Closes the connection soon: frees protocol state and the bufferevent from a deferred
 * event, so callers up the stack may still look at C until they return. */
void conn_close(struct conn *c);
/* Asks the connection to finish its current work and close (SIGTERM drain). */
void conn_drain(struct conn *c);
/*
 * Plain connections write straight from the output buffer while the socket takes it, with
 * the bufferevent's EV_WRITE off: left on, it costs an epoll_ctl pair and a loop turn per
 * answer (libevent adds the write event when bytes are queued and drops it once they are
 * out). conn_push() writes what it can and turns EV_WRITE on only while bytes are stuck (so
 * back-pressure, the send timeout and write errors still go through the bufferevent's
 * callbacks); the protocol's write callback calls conn_write_idle() to turn it off again
 * once the buffer is empty. TLS connections keep the bufferevent's own writes: both are
 * no-ops there. conn_push() returns 1 when it wrote everything, 0 otherwise.
 */
int conn_push(struct conn *c);
void conn_write_idle(struct conn *c);
/* Turns EV_WRITE off on a plain connection (the protocol writes through conn_push()). */
void conn_direct_writes(struct conn *c);

/* Protocol modules. Each takes over C->bev's callbacks, sets C->proto, and parses the
 * bytes already in the input buffer first. The *_free functions accept NULL. */
int h1_conn_start(struct conn *c);
void h1_conn_free(struct h1_conn *h);
void h1_conn_drain(struct conn *c);
int h2_conn_start(struct conn *c);
void h2_conn_free(struct h2_conn *h);
void h2_conn_drain(struct conn *c);

#endif
