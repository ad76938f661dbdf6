/*
 * upstream.h - HTTP transfers to an S3 endpoint (the local store, a peer site), driven by the
 * worker's libevent loop: our own HTTP/1.1 client over TCP or TLS (upstream.c,
 * upstream_tls.c); a base URL with a path prefix goes through libcurl's multi interface
 * (upstream_curl.c); why: upstream_impl.h. One struct upstream per worker holds the
 * keep-alive connections; one struct upstream_xfer per request streams a body up and a
 * response down, with back-pressure both ways (read_body's UPSTREAM_PAUSE, on_body's 1).
 *
 * Aborting a transfer closes its connection mid-body, which is how the proxy makes the store
 * discard an upload (a store never commits a body shorter than its Content-Length).
 *
 * OpenSSL writes to its sockets without MSG_NOSIGNAL: a program using an https upstream
 * ignores SIGPIPE (every s3tee binary does).
 */
#ifndef S3TEE_COMMON_UPSTREAM_H
#define S3TEE_COMMON_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "common/slice.h"

struct event_base;
struct evbuffer;
struct upstream;
struct upstream_xfer;

/* read_body return value: nothing available now; call upstream_resume_body() later. */
#define UPSTREAM_PAUSE ((size_t)-1)

struct upstream_xfer_ops {
    /* Up to MAX request-body bytes into BUF: n > 0, 0 at the end, or UPSTREAM_PAUSE. */
    size_t (*read_body)(void *arg, char *buf, size_t max);
    /* Optional, used instead of read_body on plain http: moves up to MAX bytes onto the end
     * of DST (evbuffer_remove_buffer hands whole chains over without copying them). Same
     * return values. */
    size_t (*move_body)(void *arg, struct evbuffer *dst, size_t max);
    /* One response header (status line excluded; slices valid for the call only). */
    void (*on_header)(void *arg, struct slice name, struct slice value);
    /* The final (non-1xx) response head is complete. */
    void (*on_head)(void *arg, int status);
    /* Response body bytes; return 1 to pause (the same bytes come again after
     * upstream_resume_response()), 0 when taken. */
    int (*on_body)(void *arg, const char *data, size_t len);
    /* Exactly once, unless the caller aborted: ERRSTR NULL on success, else one of the
     * upstream_err_* sentinels (compare by address). */
    void (*on_done)(void *arg, const char *errstr);
    /* Optional, plain http only: a socket the rest of a large Content-Length response body
     * may be written to directly, or UPSTREAM_SINK_NONE / UPSTREAM_SINK_LATER. Given a
     * socket, the transfer splices the body from the store's socket through a pipe into it:
     * the bytes never enter user space and on_body is not called again; on_sunk counts
     * them. Asked when the body still to come is large and nothing is buffered for on_body.
     * The caller must have nothing of its own queued for that socket then, and writes
     * nothing to it until on_done. *STALL_MS: how long the socket may refuse bytes before
     * the transfer fails with upstream_err_sink. splice() takes no MSG_NOSIGNAL: a caller
     * that gives a socket ignores SIGPIPE (both binaries do). */
    int (*sink_fd)(void *arg, int64_t *stall_ms);
    /* N body bytes went into the sink_fd socket. */
    void (*on_sunk)(void *arg, size_t n);
};

#define UPSTREAM_SINK_NONE (-1)  /* never for this transfer: keep calling on_body */
#define UPSTREAM_SINK_LATER (-2) /* not now (bytes still queued for it): ask again later */

extern const char upstream_err_connect[];    /* could not connect / TLS failed */
extern const char upstream_err_timeout[];    /* connect timed out */
extern const char upstream_err_io[];         /* connection broke mid-transfer */
extern const char upstream_err_sink[];       /* the sink_fd socket broke or stalled */

struct upstream_xfer_args {
    const char *method;        /* "PUT" */
    const char *path_query;    /* "/bucket/key?x=y", already encoded */
    const char *const *headers;/* "Name: value" strings, NULL-terminated; copied */
    int64_t body_length;       /* -1: no request body; else exact Content-Length */
};

struct upstream_opts {
    const char *base_url;        /* "http[s]://host:port" (copied); paths are appended */
    const char *ca_file;         /* CA bundle for https, NULL = system default (copied) */
    int tls_verify;              /* verify the server certificate and name */
    int64_t connect_timeout_ms;  /* per connection attempt */
    int max_connections;         /* kept-alive connections in the pool */
};

struct upstream *upstream_create(struct event_base *evb, const struct upstream_opts *o);
/* Cancels every transfer still running (no on_done) and frees the pool. */
void upstream_destroy(struct upstream *u);
/* Starts a transfer; NULL only if libcurl refused the handle. ARG is passed to OPS. */
struct upstream_xfer *upstream_start(struct upstream *u, const struct upstream_xfer_args *a,
                                     const struct upstream_xfer_ops *ops, void *arg);
/* More request body is available (after read_body returned UPSTREAM_PAUSE). */
void upstream_resume_body(struct upstream_xfer *x);
/* The client drained: deliver response bytes again (after on_body returned 1). */
void upstream_resume_response(struct upstream_xfer *x);
/* Cancels X: no callback is made after this returns; its connection is closed, never
 * reused, so a partial body is never committed. Safe from inside X's callbacks. */
void upstream_abort(struct upstream_xfer *x);
/* 1 while a spliced body waits for the sink_fd socket to take bytes (its stall timeout
 * runs); 0 otherwise. */
int upstream_sink_blocked(const struct upstream_xfer *x);
/* Microseconds from start until the response head arrived (0 if not yet). */
int64_t upstream_first_byte_us(const struct upstream_xfer *x);

#endif
