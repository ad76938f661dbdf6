/*
 * req.h - one S3 request, independent of the protocol that carried it.
 *
 * A front end (h1.c for HTTP/1.1, h2.c for one HTTP/2 stream) parses the request head, then
 * hands the request to req_start(); it feeds body bytes with req_body() and req_body_end().
 * The req authenticates, streams the body to the store (common/upstream.c) and answers through
 * the front end's ops. Contract, both directions:
 *
 *   front end -> req                      req -> front end (struct req_fe_ops)
 *   req_start()            once           send_continue()   at most once, before any body
 *   req_body()             0..n times     consumed(n)       body bytes handed to the store
 *   req_body_end()         at most once   pause_body() / resume_body()   back-pressure
 *   req_client_writable()  any time       send_head()       exactly once, then send_body()*
 *   req_client_gone()      at most once   send_end() or abort()   exactly once, last call
 *
 * After the req calls send_end() or abort(), or after the front end calls req_client_gone(),
 * the two never call each other again. With has_body == 0 the front end calls neither
 * req_body() nor req_body_end(). Everything in struct req_start_args is copied. The front
 * end owns the client-side timeouts (header, body, send); the req owns the store's. The
 * CONTENT_LENGTH argument of send_head() is authoritative: headers never carry it. The req frees itself once the store transfer is also
 * finished; the front end must not touch the req pointer after either of those events.
 */
#ifndef S3TEE_PROXY_REQ_H
#define S3TEE_PROXY_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/slice.h"
#include "proxy/http1.h"

struct worker;
struct evbuffer;

struct req_fe_ops {
    /* "HTTP/1.1 100 Continue" for h1 clients that sent Expect; h2 ignores it. */
    void (*send_continue)(void *fe);
    /* Body bytes have left the proxy towards the store: h2 returns flow-control credit. */
    void (*consumed)(void *fe, size_t n);
    /* Stop / resume delivering req_body(): h1 stops reading the socket; h2 may ignore
     * (its window is only re-opened through consumed()). */
    void (*pause_body)(void *fe);
    void (*resume_body)(void *fe);
    /* Response head. HDRS are borrowed for the call. CONTENT_LENGTH is -1 when unknown (h1
     * then uses chunked encoding). The front end knows HEAD and 204/304 carry no body. */
    void (*send_head)(void *fe, int status, const struct http_header *hdrs, size_t nhdrs,
                      int64_t content_length);
    /* Response body bytes; DATA is drained (moved) by the call. */
    void (*send_body)(void *fe, struct evbuffer *data);
    /* Response complete. The front end may start the next request (h1) once the request
     * body is also consumed or discarded. */
    void (*send_end)(void *fe);
    /* The response cannot be completed: h1 closes the connection, h2 resets the stream. */
    void (*abort)(void *fe);
    /* Response bytes queued in the front end, not yet written to the socket. */
    size_t (*pending)(void *fe);
    /* Optional: the client socket, when the rest of the response body (its length was given
     * to send_head) may be written to it directly, bypassing send_body: REQ_RAW_NONE when it
     * never can on this response (TLS, framing), REQ_RAW_LATER while bytes are queued in
     * front. Once given the socket, the req writes the body there and then calls send_end()
     * or abort() as usual. */
    int (*raw_fd)(void *fe);
};

#define REQ_RAW_NONE (-1)
#define REQ_RAW_LATER (-2)

struct req_start_args {
    struct slice method;             /* "GET" */
    struct slice target;             /* "/bucket/key?query" as received */
    struct slice authority;          /* Host header or :authority */
    const struct http_header *hdrs;  /* all request headers (h2: without pseudo-headers); copied */
    size_t nhdrs;
    int64_t content_length;          /* -1 when the request did not say */
    int has_body;                    /* 1 when body bytes may follow (CL > 0, chunked, h2 DATA) */
    int expect_continue;             /* client waits for 100 Continue */
    const char *proto;               /* "HTTP/1.1", "HTTP/2" (static) */
    const char *client_addr;         /* "127.0.0.1:53312" (copied) */
};

/* Creates a request bound to front end FE (borrowed until the contract above ends it). */
struct req *req_create(struct worker *w, const struct req_fe_ops *ops, void *fe);
/* Starts processing. May call back into the front end before returning (for errors). */
void req_start(struct req *r, const struct req_start_args *a);
/* Request body bytes, already stripped of HTTP framing (h1 chunked, h2 DATA); copied. */
void req_body(struct req *r, const char *data, size_t len);
/* req_body() for LEN bytes at the front of SRC, which it drains: the chains move to the store's
 * buffer without a copy. Only while req_body_movable() (not for aws-chunked bodies). */
int req_body_movable(const struct req *r);
void req_body_move(struct req *r, struct evbuffer *src, size_t len);
void req_body_end(struct req *r);
/* The front end's queued output fell below the low watermark. */
void req_client_writable(struct req *r);
/* The client vanished (connection closed, stream reset): abort the store transfer. */
void req_client_gone(struct req *r);

/* Response queue size above which the req stops pulling from the store. */
#define REQ_CLIENT_HIGH_WATERMARK (256 * 1024)

#endif
