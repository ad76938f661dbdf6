/*
 * upstream.c - transfers to an S3 endpoint (a store or a peer site's proxy) with our own
 * HTTP/1.1 client on the worker's loop, over TCP or TLS (upstream_tls.c); a base URL with a
 * path prefix goes through upstream_curl.c instead (why: upstream_impl.h).
 *
 * One struct upconn is one TCP connection to the store. While a transfer owns it:
 *
 *   upstream_start --(next loop turn)--> conn_on_write: connect done, [TLS handshake,]
 *        |                                   send head, pull body: read_body() -> out ->
 *        |                                   sendmsg (or SSL_write), until the body is all
 *        |                                   out or the caller paused it
 *        v
 *   conn_on_read: recv into in -> parse: RS_HEAD -> RS_BODY_LEN | RS_CHUNK_* | RS_BODY_EOF
 *        -> RS_DONE: the connection goes back to u->idle (or is closed), and on_done is due.
 *
 * Callbacks into the caller happen only from our own events or from the caller's resume
 * calls (as libcurl's pause API did); on_done always comes from reap_ev, never from inside a
 * call the caller made, so a caller may free itself in on_done. A transfer ends in one of
 * three lists until reap_ev frees it (impl.h's XS_*), so X stays valid for the rest of the
 * event callback that finished it.
 *
 * Back-pressure: read_body is asked for more only while less than OUT_HIGH bytes wait to be
 * sent; the socket is read only while less than IN_HIGH bytes wait for a paused caller.
 * Aborting closes the connection with the request body short of its Content-Length, so the
 * store never commits it.
 */
#include "common/upstream_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/xalloc.h"

const char upstream_err_connect[] = "cannot connect to the store";
const char upstream_err_timeout[] = "connecting to the store timed out";
const char upstream_err_io[] = "connection to the store broke";
const char upstream_err_sink[] = "the client socket broke or stopped taking the response";

#define READ_MAX (256 * 1024)      /* one recv from the store */
#define IN_HIGH (256 * 1024)       /* stop reading while this much waits for a paused caller */
#define OUT_HIGH (256 * 1024)      /* ask read_body for more only below this */
#define PULL_MAX (128 * 1024)      /* one read_body call */
#define WRITE_TURN (1024 * 1024)   /* bytes sent per loop turn before others get their go */
#define HEAD_MAX (64 * 1024)       /* a response head larger than this is a broken store */
#define LINE_MAX_BYTES 4096        /* a chunk-size or trailer line */
#define SEND_IOV 16                /* iovecs per sendmsg */
#define IDLE_MAX_US (50LL * 1000000)  /* under the keep-alive timeouts of common servers */
#define PEEK_AFTER_US (1000000)    /* idle longer than this: check it is still open */
#define RESOLVE_TTL_US (60LL * 1000000)
#define SINK_MIN (512 * 1024)      /* splice a body only when at least this much is to come */
#define SINK_PIPE (1024 * 1024)    /* pipe size asked for (the default 64 KiB when refused) */
#define SINK_TURN (4 * 1024 * 1024) /* bytes spliced per loop turn before others get their go */
#define SINK_STALL_MS 60000        /* when sink_fd gives no stall time of its own */
#define TLS_RECORD (16 * 1024)     /* one SSL_write: a full TLS record */

struct upconn {
    struct upstream *u;              /* owner (borrowed) */
    evutil_socket_t fd;              /* owned */
    struct event *rev;               /* EV_READ|EV_PERSIST, added while the socket is open */
    struct event *wev;               /* EV_WRITE|EV_PERSIST, added only while out is stuck
                                      * or connecting; never with a timeout, since libevent
                                      * re-adds a persistent event that has one each time it
                                      * runs, even from event_active() (an epoll_ctl pair per
                                      * request) */
    struct event *ctimer;            /* the connect timeout */
    struct evbuffer *out;            /* request bytes not yet sent (owned) */
    struct evbuffer *in;             /* response bytes not yet parsed (owned) */
    struct upstream_xfer *x;         /* the transfer using it; NULL while idle */
    TAILQ_ENTRY(upconn) link;        /* in u->idle while idle */
    int64_t idle_since_us;           /* when it went idle */
    SSL *ssl;                        /* https: the TLS session over fd (owned), else NULL */
    unsigned connecting : 1;         /* non-blocking connect in progress */
    unsigned handshaking : 1;        /* https: connected, TLS handshake in progress */
    unsigned rd_wants_wr : 1;        /* a TLS read waits for the socket to be writable */
    unsigned wr_wants_rd : 1;        /* a TLS write waits for the socket to be readable */
    unsigned wev_on : 1;             /* wev is added */
    unsigned reused : 1;             /* served a transfer before this one */
    unsigned eof : 1;                /* the store closed its side */
};

int64_t
upstream_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- connections ---------------------------------------------------------------------------- */

static void conn_on_read(evutil_socket_t fd, short what, void *arg);
static void sink_end(struct upstream_xfer *x);
static void conn_on_write(evutil_socket_t fd, short what, void *arg);
static void conn_on_ctimer(evutil_socket_t fd, short what, void *arg);

static void
conn_close(struct upconn *c)
{
    upstream_tls_free(c->ssl, !c->connecting && !c->handshaking && !c->eof);
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->ctimer);
    evbuffer_free(c->out);
    evbuffer_free(c->in);
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c);
}

static void
conn_set_write(struct upconn *c, int on)
{
    if (on && !c->wev_on) {
        event_add(c->wev, NULL);
        c->wev_on = 1;
    } else if (!on) {
        event_del(c->wev); /* also cancels an event_active() still due */
        c->wev_on = 0;
    }
}

/* Whether C can carry request bytes: connected, and TLS set up on https. */
static int
conn_ready(const struct upconn *c)
{
    return !c->connecting && !c->handshaking;
}

/* Reads into V like readv; on TLS, record by record until the space is full or the socket
 * has no more. TLS may hold bytes already taken off the socket (read ahead, or a record
 * bigger than the space left), which epoll will never report: the read event is made
 * active for them. */
static ssize_t
conn_recv(struct upconn *c, struct evbuffer_iovec *v, int nv)
{
    ssize_t got = 0, n = 0;
    int i, ww = 0;

    if (c->ssl == NULL) {
        return readv(c->fd, (struct iovec *)v, nv);
    }
    for (i = 0; i < nv; i++) {
        size_t off = 0;

        while (off < v[i].iov_len) {
            n = upstream_tls_read(c->ssl, (char *)v[i].iov_base + off, v[i].iov_len - off, &ww);
            if (n <= 0) {
                break;
            }
            off += (size_t)n;
        }
        got += (ssize_t)off;
        if (n <= 0) {
            break;
        }
    }
    if (n < 0 && errno == EAGAIN && ww) {
        c->rd_wants_wr = 1;
        conn_set_write(c, 1);
    }
    if (n > 0) {
        /* stopped for space: TLS may hold records it read ahead, which the socket will
         * never report again; the rest next turn (after a WANT_READ the socket reports) */
        event_active(c->rev, EV_READ, 0);
    }
    if (got > 0) {
        return got; /* an end or an error right after shows on the next call */
    }
    return n;
}

/* Sends from the front of OUT like sendmsg; on TLS, one record's worth (pulled up into one
 * piece, so a head and a small body go as one record and one write). */
static ssize_t
conn_send(struct upconn *c, struct evbuffer *out)
{
    struct evbuffer_iovec v[SEND_IOV];
    struct msghdr mh;
    size_t len;
    ssize_t n;
    int nv, ww = 0;

    if (c->ssl != NULL) {
        len = evbuffer_get_length(out);
        len = len < TLS_RECORD ? len : TLS_RECORD;
        n = upstream_tls_write(c->ssl, evbuffer_pullup(out, (ev_ssize_t)len), len, &ww);
        if (n < 0 && errno == EAGAIN && !ww) {
            c->wr_wants_rd = 1; /* the read event is on while a transfer runs */
            errno = EINTR;      /* nothing to wait for on the write side */
        }
        return n;
    }
    nv = evbuffer_peek(out, -1, NULL, v, SEND_IOV);
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = (struct iovec *)v;
    mh.msg_iovlen = (size_t)(nv < SEND_IOV ? nv : SEND_IOV);
    /* MSG_NOSIGNAL: a store that closed early must not raise SIGPIPE in a library user */
    return sendmsg(c->fd, &mh, MSG_NOSIGNAL);
}

static int
resolve(struct upstream *u)
{
    struct addrinfo hints, *res = NULL;
    int64_t now = upstream_now_us();
    int rc;

    if (u->addrlen > 0 && now - u->resolved_us < RESOLVE_TTL_US) {
        return 0;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    /* an address needs no lookup; a name is looked up at most once a minute per worker, on
     * the loop (a store's name is expected to resolve from the local resolver at once) */
    rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc == EAI_NONAME) {
        hints.ai_flags = AI_NUMERICSERV;
        rc = getaddrinfo(u->host, u->port, &hints, &res);
    }
    if (rc != 0 || res == NULL || res->ai_addrlen > sizeof(u->addr)) {
        log_warn("upstream", "cannot resolve the store's host %s: %s", u->host,
                 rc != 0 ? gai_strerror(rc) : "no address");
        if (res != NULL) {
            freeaddrinfo(res);
        }
        return u->addrlen > 0 ? 0 : -1; /* keep using the last address we had */
    }
    memcpy(&u->addr, res->ai_addr, res->ai_addrlen);
    u->addrlen = res->ai_addrlen;
    u->resolved_us = now;
    freeaddrinfo(res);
    return 0;
}

/* A new connection, connecting; NULL if no socket could be made or the connect failed at
 * once (the caller reports upstream_err_connect). */
static struct upconn *
conn_open(struct upstream *u)
{
    struct upconn *c;
    int fd, one = 1;
    struct timeval tv;

    if (resolve(u) < 0) {
        return NULL;
    }
    fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_warn("upstream", "socket for the store: %s", strerror(errno));
        return NULL;
    }
    /* requests are written whole; Nagle would hold a head's tail for the store's ACK */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&u->addr, u->addrlen) < 0 && errno != EINPROGRESS) {
        log_debug("upstream", "connect to %s:%s: %s", u->host, u->port, strerror(errno));
        close(fd);
        return NULL;
    }
    c = xcalloc(1, sizeof(*c));
    c->u = u;
    c->fd = fd;
    c->rev = event_new(u->evb, fd, EV_READ | EV_PERSIST, conn_on_read, c);
    c->wev = event_new(u->evb, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
    c->out = evbuffer_new();
    c->in = evbuffer_new();
    c->ctimer = evtimer_new(u->evb, conn_on_ctimer, c);
    c->connecting = 1;
    tv.tv_sec = u->connect_timeout_ms / 1000;
    tv.tv_usec = (u->connect_timeout_ms % 1000) * 1000;
    if (u->connect_timeout_ms > 0) {
        evtimer_add(c->ctimer, &tv);
    }
    event_add(c->wev, NULL);
    c->wev_on = 1;
    return c;
}

/* Whether a connection that sat idle is still open: the store may have closed it (its
 * keep-alive timeout) without our loop having seen the FIN yet. */
static int
conn_alive(struct upconn *c)
{
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static struct upconn *
conn_take_idle(struct upstream *u)
{
    struct upconn *c;
    int64_t now = upstream_now_us();

    while ((c = TAILQ_FIRST(&u->idle)) != NULL) {
        TAILQ_REMOVE(&u->idle, c, link);
        u->nidle--;
        if (now - c->idle_since_us > IDLE_MAX_US ||
            (now - c->idle_since_us > PEEK_AFTER_US && !conn_alive(c))) {
            conn_close(c);
            continue;
        }
        c->reused = 1;
        return c;
    }
    return NULL;
}

/* The transfer is done with C: keep it for the next one when it is clean, else close it. */
static void
conn_release(struct upconn *c, int reusable)
{
    struct upstream *u = c->u;

    c->x = NULL;
    conn_set_write(c, 0);
    if (!reusable || c->eof || evbuffer_get_length(c->in) > 0 || evbuffer_get_length(c->out) > 0 ||
        u->nidle >= u->max_idle) {
        conn_close(c);
        return;
    }
    /* an idle connection must watch for the store closing it, whatever a paused caller
     * did to the read event before (no syscall when it is still registered) */
    event_add(c->rev, NULL);
    c->idle_since_us = upstream_now_us();
    TAILQ_INSERT_HEAD(&u->idle, c, link);
    u->nidle++;
}

/* ---- transfer lifecycle --------------------------------------------------------------------- */

/* Whether X is over for its caller (finished, failed or aborted): checked after every
 * callback, since a callback may end X and release its connection. */
static int
ended(const struct upstream_xfer *x)
{
    return x->aborted || x->xstate != XS_LIVE;
}

static void
xfer_free(struct upstream_xfer *x)
{
    sink_end(x);
    if (x->c != NULL) {
        conn_close(x->c);
        x->c = NULL;
    }
    upstream_curl_release(x);
    free(x->head);
    free(x);
}

static void
list_remove(struct upstream_xfer *x)
{
    struct upstream *u = x->u;

    switch (x->xstate) {
    case XS_LIVE:
        TAILQ_REMOVE(&u->live, x, link);
        break;
    case XS_DONE:
        TAILQ_REMOVE(&u->done, x, link);
        break;
    case XS_DEAD:
        TAILQ_REMOVE(&u->dead, x, link);
        break;
    }
}

static void
on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *u = arg;
    struct upstream_xfer *x;

    (void)fd;
    (void)what;
    while ((x = TAILQ_FIRST(&u->dead)) != NULL) {
        TAILQ_REMOVE(&u->dead, x, link);
        xfer_free(x);
    }
    /* one at a time from the head: an on_done may abort or finish other transfers */
    while ((x = TAILQ_FIRST(&u->done)) != NULL) {
        const struct upstream_xfer_ops *ops = x->ops;
        void *cb_arg = x->arg;
        const char *err = x->done_err;

        TAILQ_REMOVE(&u->done, x, link);
        xfer_free(x);
        ops->on_done(cb_arg, err);
    }
}

void
upstream_xfer_finish(struct upstream_xfer *x, const char *err)
{
    struct upstream *u = x->u;

    if (x->aborted || x->xstate != XS_LIVE) {
        return;
    }
    sink_end(x);
    if (x->c != NULL) {
        /* a failed transfer's connection is never reused */
        conn_release(x->c, err == NULL && x->keep && x->body_left == 0 && !x->write_broken);
        x->c = NULL;
    }
    upstream_curl_release(x);
    list_remove(x);
    x->xstate = XS_DONE;
    x->done_err = err;
    TAILQ_INSERT_TAIL(&u->done, x, link);
    event_active(u->reap_ev, 0, 0);
}

/* ---- request side ----------------------------------------------------------------------------- */

/* One pull of request body into OUT, at most WANT bytes: the bytes added, 0 when the
 * caller's body ended, or UPSTREAM_PAUSE. move_body hands chains over; read_body fills
 * reserved space (two vectors: with one, libevent would copy the last chain's bytes into a
 * bigger chain to make the space contiguous, a memmove of up to PULL_MAX per pull). */
static size_t
pull_some(struct upstream_xfer *x, struct evbuffer *out, size_t want)
{
    struct evbuffer_iovec v[2];
    size_t got = 0, n = 0;
    int nv, i, used = 0;

    if (x->ops->move_body != NULL) {
        return x->ops->move_body(x->arg, out, want);
    }
    nv = evbuffer_reserve_space(out, (ev_ssize_t)want, v, 2);
    if (nv < 1) {
        upstream_xfer_finish(x, upstream_err_io);
        return 0;
    }
    for (i = 0; i < nv && got < want; i++) {
        size_t room = v[i].iov_len < want - got ? v[i].iov_len : want - got;

        n = x->ops->read_body(x->arg, v[i].iov_base, room);
        if (ended(x) || n == UPSTREAM_PAUSE || n == 0) {
            break;
        }
        v[i].iov_len = n;
        got += n;
        used = i + 1;
        if (n < room) {
            break; /* the caller has no more for now; ask again next round */
        }
    }
    if (used > 0 && !ended(x)) {
        evbuffer_commit_space(out, v, used);
        return got; /* a pause or the end right after shows on the next pull */
    }
    return n;
}

/* Moves body bytes from the caller into OUT until enough wait, the body is all there or the
 * caller pauses. 0, or -1 when X ended (aborted, or the caller's body ended short). */
static int
pull_body(struct upstream_xfer *x)
{
    struct upconn *c = x->c;

    while (x->body_left > 0 && !x->send_paused && evbuffer_get_length(c->out) < OUT_HIGH) {
        size_t max = x->ops->move_body != NULL ? OUT_HIGH : PULL_MAX;
        size_t want = x->body_left < (int64_t)max ? (size_t)x->body_left : max;
        size_t n = pull_some(x, c->out, want);

        if (ended(x)) {
            return -1;
        }
        if (n == UPSTREAM_PAUSE) {
            x->send_paused = 1;
            break;
        }
        if (n == 0 || n > want) {
            /* the caller ran out before its Content-Length: never let the store commit a
             * short body as whole (closing the connection makes it discard it) */
            log_warn("upstream", "request body ended %lld bytes short of its length",
                     (long long)x->body_left);
            upstream_xfer_finish(x, upstream_err_io);
            return -1;
        }
        x->body_left -= (int64_t)n;
        x->pulled = 1;
    }
    return 0;
}

/* Sends what OUT holds, pulling more body as it drains. */
static void
send_out(struct upstream_xfer *x)
{
    struct upconn *c = x->c;
    size_t sent = 0;

    for (;;) {
        ssize_t n;

        if (!x->write_broken && pull_body(x) < 0) {
            return;
        }
        if (x->write_broken || evbuffer_get_length(c->out) == 0) {
            conn_set_write(c, 0);
            return;
        }
        if (sent >= WRITE_TURN) {
            conn_set_write(c, 1); /* the socket is writable: we are called again next turn */
            return;
        }
        n = conn_send(c, c->out);
        if (n < 0) {
            if (errno == EINTR && c->wr_wants_rd) {
                conn_set_write(c, 0); /* conn_on_read sends again */
                return;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                conn_set_write(c, 1);
                return;
            }
            /* the store may have answered and closed (an early error): read what it said */
            log_debug("upstream", "send to the store: %s", strerror(errno));
            x->write_broken = 1;
            evbuffer_drain(c->out, evbuffer_get_length(c->out));
            conn_set_write(c, 0);
            return;
        }
        evbuffer_drain(c->out, (size_t)n);
        sent += (size_t)n;
    }
}

/* ---- response side ---------------------------------------------------------------------------- */

static int
parse_status(struct slice line)
{
    int st = 0;
    size_t i;

    if (line.len < 12 || !slice_starts_with(line, SLICE_LIT("HTTP/1.")) || line.ptr[8] != ' ') {
        return -1;
    }
    for (i = 9; i < 12; i++) {
        if (line.ptr[i] < '0' || line.ptr[i] > '9') {
            return -1;
        }
        st = st * 10 + (line.ptr[i] - '0');
    }
    if ((line.len > 12 && line.ptr[12] != ' ') || st < 100) {
        return -1;
    }
    return st;
}

/* Whether a Transfer-Encoding value ends in chunked (the only coding a store sends). */
static int
te_chunked(struct slice v)
{
    long comma;

    while ((comma = slice_index(v, ',')) >= 0) {
        v = slice_make(v.ptr + comma + 1, v.len - (size_t)comma - 1);
    }
    return slice_eq_nocase(slice_trim(v), SLICE_LIT("chunked"));
}

/* Parses one whole head at HEAD (LEN bytes, ending in the empty line). 0, 1 for a 1xx head
 * to skip, -1 when it is malformed, or -2 when X ended during a callback. */
static int
parse_head(struct upstream_xfer *x, const char *head, size_t len)
{
    struct slice rest = slice_make(head, len), line;
    long eol;
    int first = 1, status = 0;

    x->has_length = 0;
    x->chunked = 0;
    x->keep = 1;
    while ((eol = slice_index(rest, '\n')) >= 0) {
        line = slice_make(rest.ptr, (size_t)eol);
        rest = slice_make(rest.ptr + eol + 1, rest.len - (size_t)eol - 1);
        if (line.len && line.ptr[line.len - 1] == '\r') {
            line.len--;
        }
        if (first) {
            first = 0;
            status = parse_status(line);
            if (status < 0) {
                return -1;
            }
            if (line.ptr[7] == '0') {
                x->keep = 0; /* HTTP/1.0 closes unless asked otherwise; we never ask */
            }
            if (status < 200) {
                return 1;
            }
            x->status = status;
            continue;
        }
        if (line.len == 0) {
            break;
        }
        {
            long colon = slice_index(line, ':');
            struct slice name, value;

            if (colon <= 0) {
                return -1;
            }
            name = slice_make(line.ptr, (size_t)colon);
            value = slice_trim(slice_make(line.ptr + colon + 1, line.len - (size_t)colon - 1));
            if (slice_eq_nocase(name, SLICE_LIT("content-length"))) {
                uint64_t n;

                if (slice_to_u64(value, &n) < 0 || n > INT64_MAX ||
                    (x->has_length && x->resp_left != (int64_t)n)) {
                    return -1;
                }
                x->has_length = 1;
                x->resp_left = (int64_t)n;
            } else if (slice_eq_nocase(name, SLICE_LIT("transfer-encoding"))) {
                if (!te_chunked(value)) {
                    return -1;
                }
                x->chunked = 1;
            } else if (slice_eq_nocase(name, SLICE_LIT("connection")) &&
                       slice_eq_nocase(value, SLICE_LIT("close"))) {
                x->keep = 0;
            }
            x->ops->on_header(x->arg, name, value);
            if (ended(x)) {
                return -2;
            }
        }
    }
    x->head_done = 1;
    x->first_byte_us = upstream_now_us() - x->start_us;
    if (x->is_head || status == 204 || status == 304) {
        x->rs = RS_DONE;
    } else if (x->chunked) {
        x->rs = RS_CHUNK_SIZE;
    } else if (x->has_length) {
        x->rs = x->resp_left > 0 ? RS_BODY_LEN : RS_DONE;
    } else {
        x->rs = RS_BODY_EOF;
        x->keep = 0;
    }
    x->ops->on_head(x->arg, status);
    return ended(x) ? -2 : 0;
}

/* Hands up to MAX bytes of IN to on_body, one contiguous piece at a time. 0 when all went,
 * 1 when the caller paused, -1 when X ended. */
static int
deliver(struct upstream_xfer *x, int64_t max)
{
    struct evbuffer *in = x->c->in;

    while (max > 0 && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        size_t n;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) {
            break;
        }
        n = v.iov_len < (uint64_t)max ? v.iov_len : (size_t)max;
        if (x->ops->on_body(x->arg, v.iov_base, n)) {
            if (ended(x)) {
                return -1;
            }
            x->recv_paused = 1;
            return 1;
        }
        if (ended(x)) {
            return -1;
        }
        evbuffer_drain(in, n);
        max -= (int64_t)n;
        if (x->rs != RS_BODY_EOF) {
            x->resp_left -= (int64_t)n;
        }
    }
    return 0;
}

/* One CRLF-terminated line of at most LINE_MAX_BYTES at the front of IN, NUL-free, copied to
 * BUF: its length, -1 if it has not all arrived, -2 if it is too long. */
static long
take_line(struct evbuffer *in, char *buf)
{
    size_t eol_len;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF_STRICT);

    if (p.pos < 0) {
        return evbuffer_get_length(in) > LINE_MAX_BYTES ? -2 : -1;
    }
    if ((size_t)p.pos >= LINE_MAX_BYTES) {
        return -2;
    }
    evbuffer_remove(in, buf, (size_t)p.pos);
    evbuffer_drain(in, eol_len);
    buf[p.pos] = '\0';
    return (long)p.pos;
}

static int
parse_chunk_size(const char *line, int64_t *out)
{
    int64_t n = 0;
    int digits = 0;

    for (; *line; line++) {
        int d;

        if (*line >= '0' && *line <= '9') {
            d = *line - '0';
        } else if (*line >= 'a' && *line <= 'f') {
            d = *line - 'a' + 10;
        } else if (*line >= 'A' && *line <= 'F') {
            d = *line - 'A' + 10;
        } else {
            break;
        }
        if (++digits > 15) {
            return -1;
        }
        n = n * 16 + d;
    }
    if (digits == 0 || (*line != '\0' && *line != ';' && *line != ' ' && *line != '\t')) {
        return -1;
    }
    *out = n;
    return 0;
}

/* Runs the response parser over what IN holds. 0 when it needs more bytes (or the caller
 * paused), -1 when X ended (done, failed or aborted). */
static int
parse_input(struct upstream_xfer *x)
{
    struct upconn *c = x->c;
    char line[LINE_MAX_BYTES + 1];
    long n;
    int rc;

    while (!x->recv_paused) {
        if (ended(x)) {
            return -1;
        }
        switch (x->rs) {
        case RS_HEAD: {
            struct evbuffer_ptr p = evbuffer_search(c->in, "\r\n\r\n", 4, NULL);
            const char *h;

            if (p.pos < 0) {
                if (evbuffer_get_length(c->in) > HEAD_MAX) {
                    log_warn("upstream", "the store sent a response head over %d bytes", HEAD_MAX);
                    upstream_xfer_finish(x, upstream_err_io);
                    return -1;
                }
                return 0;
            }
            h = (const char *)evbuffer_pullup(c->in, p.pos + 4);
            rc = parse_head(x, h, (size_t)p.pos + 4);
            if (rc == -2) {
                return -1;
            }
            if (rc == -1) {
                log_warn("upstream", "the store sent a malformed response head");
                upstream_xfer_finish(x, upstream_err_io);
                return -1;
            }
            evbuffer_drain(c->in, (size_t)p.pos + 4);
            break; /* a 1xx head (rc 1) leaves rs at RS_HEAD for the next one */
        }
        case RS_BODY_LEN:
        case RS_CHUNK_DATA:
            if (evbuffer_get_length(c->in) == 0) {
                return 0;
            }
            rc = deliver(x, x->resp_left);
            if (rc != 0) {
                return rc < 0 ? -1 : 0;
            }
            if (x->resp_left == 0) {
                x->rs = x->rs == RS_BODY_LEN ? RS_DONE : RS_CHUNK_END;
            }
            break;
        case RS_CHUNK_SIZE:
        case RS_CHUNK_END:
        case RS_TRAILERS:
            n = take_line(c->in, line);
            if (n == -1) {
                return 0;
            }
            if (n == -2 || (x->rs == RS_CHUNK_END && n != 0) ||
                (x->rs == RS_CHUNK_SIZE && parse_chunk_size(line, &x->resp_left) < 0)) {
                log_warn("upstream", "the store sent malformed chunked framing");
                upstream_xfer_finish(x, upstream_err_io);
                return -1;
            }
            if (x->rs == RS_CHUNK_SIZE) {
                x->rs = x->resp_left > 0 ? RS_CHUNK_DATA : RS_TRAILERS;
            } else if (x->rs == RS_CHUNK_END) {
                x->rs = RS_CHUNK_SIZE;
            } else if (n == 0) {
                x->rs = RS_DONE;
            }
            break;
        case RS_BODY_EOF:
            if (evbuffer_get_length(c->in) > 0) {
                rc = deliver(x, INT64_MAX);
                if (rc != 0) {
                    return rc < 0 ? -1 : 0;
                }
            }
            if (!c->eof) {
                return 0;
            }
            if (c->ssl != NULL && !(SSL_get_shutdown(c->ssl) & SSL_RECEIVED_SHUTDOWN)) {
                /* only close_notify ends a body framed by the close: a bare TCP end may be
                 * someone cutting it short (RFC 9112 9.8) */
                log_warn("upstream", "the store's TLS ended without close_notify inside a body "
                         "framed by the close: taken as cut short");
                upstream_xfer_finish(x, upstream_err_io);
                return -1;
            }
            x->rs = RS_DONE;
            break;
        case RS_DONE:
            upstream_xfer_finish(x, NULL);
            return -1;
        }
    }
    return 0;
}

/* ---- response body spliced into the caller's socket ------------------------------------------ */

/*
 * A large Content-Length body can go from the store's socket into the client's without
 * entering user space: splice() moves the socket's pages into a pipe and from the pipe into
 * the other socket. Reading it into an evbuffer, handing it to the caller and writing it
 * out again cost two copies and about a second of CPU per GiB (tests/bench/README.md).
 *
 *   conn_on_read, body left >= SINK_MIN, nothing buffered --sink_fd()--> socket: SPLICING
 *   SPLICING: store --splice--> pipe (at most its size) --splice--> socket, until one side
 *             would block (its event is added: rev for the store, dev for the socket, with
 *             the stall timeout) or SINK_TURN bytes went (dev is made active: next turn).
 *   all of the body out: RS_DONE; a store that closes early: upstream_err_io; a socket that
 *   fails or stalls: upstream_err_sink. Either way the pipe goes back to the spares only
 *   when it is empty.
 */
struct upstream_sink {
    int pr, pw;          /* the pipe's ends (owned) */
    size_t cap;          /* its size */
    size_t fill;         /* bytes in it, read from the store, not yet in the socket */
    int dst;             /* the caller's socket (borrowed) */
    int64_t stall_ms;    /* how long dst may refuse bytes */
    struct event *dev;   /* dst writable, or the stall timeout; also the next-turn kick */
    unsigned dst_blocked : 1; /* dev waits for dst to take bytes */
};

static void sink_on_dst(evutil_socket_t fd, short what, void *arg);

/* An empty pipe from the spares, or a new one. -1 when none can be made. */
static int
sink_pipe(struct upstream *u, int fds[2], size_t *cap)
{
    int sz;

    if (u->nspare_pipes > 0) {
        u->nspare_pipes--;
        fds[0] = u->spare_pipes[u->nspare_pipes][0];
        fds[1] = u->spare_pipes[u->nspare_pipes][1];
    } else if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        return -1;
    } else {
        (void)fcntl(fds[1], F_SETPIPE_SZ, SINK_PIPE); /* a smaller pipe only costs turns */
    }
    sz = fcntl(fds[1], F_GETPIPE_SZ);
    *cap = sz > 0 ? (size_t)sz : 65536;
    return 0;
}

/* Ends X's splicing: the event goes, the pipe goes back to the spares when it is empty
 * (bytes left in it belong to no one) or is closed. upstream_xfer_finish, upstream_abort
 * and xfer_free all call it, so every way out of a transfer ends its splicing. */
static void
sink_end(struct upstream_xfer *x)
{
    struct upstream_sink *s = x->sink;
    struct upstream *u = x->u;

    if (s == NULL) {
        return;
    }
    x->sink = NULL;
    event_free(s->dev);
    if (s->fill == 0 && u->nspare_pipes < UPSTREAM_SPARE_PIPES) {
        u->spare_pipes[u->nspare_pipes][0] = s->pr;
        u->spare_pipes[u->nspare_pipes][1] = s->pw;
        u->nspare_pipes++;
    } else {
        close(s->pr);
        close(s->pw);
    }
    free(s);
}

/* Whether X's body should be spliced from here on; 1 with X->sink set up. */
static int
sink_begin(struct upstream_xfer *x)
{
    struct upstream_sink *s;
    int64_t stall_ms = SINK_STALL_MS;
    int dst, fds[2];
    size_t cap;

    if (x->ops->sink_fd == NULL || x->sink_declined || x->c->ssl != NULL || x->rs != RS_BODY_LEN ||
        x->resp_left < SINK_MIN || evbuffer_get_length(x->c->in) > 0) {
        return 0;
    }
    dst = x->ops->sink_fd(x->arg, &stall_ms);
    if (ended(x) || dst == UPSTREAM_SINK_LATER) {
        return 0;
    }
    if (dst < 0 || sink_pipe(x->u, fds, &cap) < 0) {
        x->sink_declined = 1;
        return 0;
    }
    s = xcalloc(1, sizeof(*s));
    s->pr = fds[0];
    s->pw = fds[1];
    s->cap = cap;
    s->dst = dst;
    s->stall_ms = stall_ms > 0 ? stall_ms : SINK_STALL_MS;
    s->dev = event_new(x->u->evb, dst, EV_WRITE, sink_on_dst, x);
    x->sink = s;
    return 1;
}

/* Moves body bytes store -> pipe -> socket until both sides would block, the body is
 * through or this turn's share is used; then arms the events that continue it. */
static void
sink_run(struct upstream_xfer *x)
{
    struct upstream_sink *s = x->sink;
    struct upconn *c = x->c;
    size_t turn = 0;
    int src_blocked = 0;

    s->dst_blocked = 0;
    while (x->resp_left > 0 && turn < SINK_TURN) {
        int64_t unread = x->resp_left - (int64_t)s->fill;
        int moved = 0;
        ssize_t n;

        if (unread > 0 && s->fill < s->cap && !src_blocked) {
            size_t want = s->cap - s->fill;

            if ((int64_t)want > unread) {
                want = (size_t)unread;
            }
            n = splice(c->fd, NULL, s->pw, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                s->fill += (size_t)n;
                moved = 1;
            } else if (n == 0) {
                c->eof = 1;
                log_debug("upstream", "the store closed with %lld body bytes to go",
                          (long long)unread);
                upstream_xfer_finish(x, upstream_err_io);
                return;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                src_blocked = 1;
            } else if (errno != EINTR) {
                log_debug("upstream", "splice from the store: %s", strerror(errno));
                upstream_xfer_finish(x, upstream_err_io);
                return;
            }
        }
        if (s->fill > 0 && !s->dst_blocked) {
            unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

            if (x->resp_left > (int64_t)s->fill) {
                flags |= SPLICE_F_MORE; /* more follows: no need to push a partial segment */
            }
            n = splice(s->pr, NULL, s->dst, NULL, s->fill, flags);
            if (n > 0) {
                s->fill -= (size_t)n;
                x->resp_left -= n;
                turn += (size_t)n;
                moved = 1;
                x->ops->on_sunk(x->arg, (size_t)n);
                if (ended(x)) {
                    return;
                }
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                s->dst_blocked = 1;
            } else if (n == 0 || errno != EINTR) {
                log_debug("upstream", "splice to the client: %s",
                          n == 0 ? "nothing taken" : strerror(errno));
                upstream_xfer_finish(x, upstream_err_sink);
                return;
            }
        }
        if (!moved) {
            break;
        }
    }
    if (x->resp_left == 0) {
        x->rs = RS_DONE;
        upstream_xfer_finish(x, NULL);
        return;
    }
    /* the store's socket is read only while the pipe has room: with it full and the client
     * slow, a level-triggered read event would spin */
    if (s->fill < s->cap && x->resp_left > (int64_t)s->fill) {
        event_add(c->rev, NULL);
    } else {
        event_del(c->rev);
    }
    if (s->dst_blocked) {
        struct timeval tv = {(time_t)(s->stall_ms / 1000), (suseconds_t)(s->stall_ms % 1000) * 1000};

        event_add(s->dev, &tv);
    } else if (turn >= SINK_TURN) {
        event_active(s->dev, EV_WRITE, 0); /* the rest next turn, after the other events */
    } else {
        event_del(s->dev); /* waiting on the store: rev brings it back */
    }
}

static void
sink_on_dst(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_xfer *x = arg;

    (void)fd;
    if (what & EV_TIMEOUT) {
        log_warn("upstream", "the client took no response bytes for %lld ms; transfer cut",
                 (long long)x->sink->stall_ms);
        upstream_xfer_finish(x, upstream_err_sink);
        return;
    }
    sink_run(x);
}

int
upstream_sink_blocked(const struct upstream_xfer *x)
{
    return x->sink != NULL && x->sink->dst_blocked;
}

/* ---- events ----------------------------------------------------------------------------------- */

static void start_on(struct upstream_xfer *x, struct upconn *c);

/* The connection failed under X (EOF or an error before the answer was complete). A
 * kept-alive connection the store had closed is retried once on a fresh one, when nothing
 * of the body was taken yet (else there is nothing to resend it from). */
static void
conn_failed(struct upstream_xfer *x, const char *err)
{
    struct upconn *c = x->c;

    if (c->reused && !x->got_bytes && !x->pulled && !x->retried && x->head != NULL) {
        struct upconn *fresh;

        x->retried = 1;
        x->write_broken = 0;
        x->c = NULL;
        conn_close(c);
        log_debug("upstream", "kept-alive connection to the store was closed; sending again");
        fresh = conn_open(x->u);
        if (fresh != NULL) {
            start_on(x, fresh);
            return;
        }
        err = upstream_err_connect;
    }
    upstream_xfer_finish(x, err);
}

/* One step of X's TLS handshake on C; once it is done the request goes out. The connect
 * timeout keeps running until then: a server that accepts and never answers times out. */
static void
conn_handshake(struct upstream_xfer *x, struct upconn *c)
{
    int ww = 0, rc = upstream_tls_handshake(c->u, c->ssl, &ww);

    if (rc < 0) {
        upstream_xfer_finish(x, upstream_err_connect);
        return;
    }
    if (rc == 0) {
        conn_set_write(c, ww);
        return;
    }
    c->handshaking = 0;
    evtimer_del(c->ctimer);
    conn_set_write(c, 0); /* send_out adds it back if the socket fills */
    send_out(x);
}

/* An idle TLS connection may still get records that carry no data (a session ticket sent
 * late): reading them keeps it. Whether it stays usable. */
static int
conn_idle_ok(struct upconn *c)
{
    char b;
    int ww = 0;

    return c->ssl != NULL && upstream_tls_read(c->ssl, &b, 1, &ww) < 0 && errno == EAGAIN && !ww;
}

static void
conn_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *c = arg;
    struct upstream_xfer *x = c->x;
    struct evbuffer_iovec v[2];
    ssize_t n;
    int nv;

    (void)fd;
    (void)what;
    if (x == NULL) {
        if (conn_idle_ok(c)) {
            return;
        }
        /* idle: the store closed it, or sent bytes nobody asked for; either way it is done */
        TAILQ_REMOVE(&c->u->idle, c, link);
        c->u->nidle--;
        conn_close(c);
        return;
    }
    if (c->handshaking) {
        conn_handshake(x, c);
        return;
    }
    if (c->wr_wants_rd) {
        c->wr_wants_rd = 0;
        send_out(x);
        if (ended(x)) {
            return;
        }
    }
    if (x->sink != NULL || sink_begin(x)) {
        sink_run(x);
        return;
    }
    if (ended(x)) {
        return;
    }
    if (evbuffer_get_length(c->in) >= IN_HIGH) {
        event_del(c->rev); /* the caller is paused; upstream_resume_response adds it back */
        return;
    }
    nv = evbuffer_reserve_space(c->in, READ_MAX, v, 2);
    if (nv < 1) {
        upstream_xfer_finish(x, upstream_err_io);
        return;
    }
    n = conn_recv(c, v, nv);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return;
        }
        log_debug("upstream", "recv from the store: %s", strerror(errno));
        conn_failed(x, upstream_err_io);
        return;
    }
    if (n == 0) {
        c->eof = 1;
        event_del(c->rev);
    } else {
        size_t left = (size_t)n;
        int i;

        for (i = 0; i < nv; i++) {
            v[i].iov_len = left < v[i].iov_len ? left : v[i].iov_len;
            left -= v[i].iov_len;
        }
        evbuffer_commit_space(c->in, v, nv);
        x->got_bytes = 1;
    }
    if (parse_input(x) < 0) {
        return;
    }
    if (c->eof && !x->recv_paused) {
        conn_failed(x, upstream_err_io); /* closed before the answer was complete */
    }
}

static void
conn_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *c = arg;
    struct upstream_xfer *x = c->x;

    (void)what;
    if (x == NULL) {
        conn_set_write(c, 0);
        return;
    }
    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
            err = errno;
        }
        if (err != 0) {
            log_debug("upstream", "connect to %s:%s: %s", c->u->host, c->u->port, strerror(err));
            upstream_xfer_finish(x, upstream_err_connect);
            return;
        }
        c->connecting = 0;
        event_add(c->rev, NULL);
        if (c->u->tls) {
            c->ssl = upstream_tls_new(c->u, fd);
            if (c->ssl == NULL) {
                log_warn("upstream", "cannot start TLS to %s:%s", c->u->host, c->u->port);
                upstream_xfer_finish(x, upstream_err_connect);
                return;
            }
            c->handshaking = 1;
        } else {
            evtimer_del(c->ctimer);
            conn_set_write(c, 0); /* send_out adds it back if the socket fills */
        }
    }
    if (c->handshaking) {
        conn_handshake(x, c);
        return;
    }
    if (c->rd_wants_wr) {
        /* a TLS read was waiting for this; it goes on, and the write event is off again
         * until a send fills the socket */
        c->rd_wants_wr = 0;
        conn_set_write(c, 0);
        event_active(c->rev, EV_READ, 0);
    }
    send_out(x);
}

static void
conn_on_ctimer(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *c = arg;

    (void)fd;
    (void)what;
    if (c->x != NULL && !conn_ready(c)) {
        log_debug("upstream", "%s to %s:%s timed out", c->connecting ? "connect" : "TLS handshake",
                  c->u->host, c->u->port);
        upstream_xfer_finish(c->x, upstream_err_timeout);
    }
}

/* Puts X's head on C and sends it from the next loop turn (never from inside the caller's
 * call: read_body must not run before upstream_start has returned). */
static void
start_on(struct upstream_xfer *x, struct upconn *c)
{
    x->c = c;
    c->x = x;
    evbuffer_add(c->out, x->head, x->head_len);
    if (conn_ready(c)) {
        event_active(c->wev, EV_WRITE, 0);
    }
}

/* ---- public ----------------------------------------------------------------------------------- */

/* Splits "http[s]://host:port[/]" into U's host, port and tls. -1 for anything else. */
static int
parse_base_url(struct upstream *u, const char *url)
{
    const char *h, *end, *colon;

    if (strncasecmp(url, "http://", 7) == 0) {
        h = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        h = url + 8;
        u->tls = 1;
    } else {
        return -1;
    }
    end = h + strcspn(h, "/?#");
    if (*end != '\0' && strcmp(end, "/") != 0) {
        return -1; /* a path prefix: libcurl keeps appending to the whole URL as before */
    }
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));

        if (rb == NULL) {
            return -1;
        }
        u->host = xstrndup(h + 1, (size_t)(rb - h - 1));
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        u->host = xstrndup(h, (size_t)((colon ? colon : end) - h));
    }
    u->port = colon ? xstrndup(colon + 1, (size_t)(end - colon - 1))
                    : xstrdup(u->tls ? "443" : "80");
    return 0;
}

struct upstream *
upstream_create(struct event_base *evb, const struct upstream_opts *o)
{
    struct upstream *u = xcalloc(1, sizeof(*u));

    u->evb = evb;
    u->reap_ev = event_new(evb, -1, 0, on_reap, u);
    TAILQ_INIT(&u->live);
    TAILQ_INIT(&u->dead);
    TAILQ_INIT(&u->done);
    TAILQ_INIT(&u->idle);
    u->connect_timeout_ms = o->connect_timeout_ms;
    u->max_idle = o->max_connections;
    if (parse_base_url(u, o->base_url) < 0) {
        free(u->host);
        free(u->port);
        u->host = u->port = NULL;
        u->tls = 0;
        u->use_curl = 1;
        upstream_curl_init(u, o);
    } else if (u->tls) {
        (void)upstream_tls_init(u, o); /* on failure: logged, and each connection fails */
    }
    return u;
}

void
upstream_destroy(struct upstream *u)
{
    struct upstream_xfer *x;
    struct upconn *c;

    if (u == NULL) {
        return;
    }
    while ((x = TAILQ_FIRST(&u->live)) != NULL) {
        TAILQ_REMOVE(&u->live, x, link);
        xfer_free(x);
    }
    while ((x = TAILQ_FIRST(&u->done)) != NULL) {
        TAILQ_REMOVE(&u->done, x, link);
        xfer_free(x);
    }
    while ((x = TAILQ_FIRST(&u->dead)) != NULL) {
        TAILQ_REMOVE(&u->dead, x, link);
        xfer_free(x);
    }
    while ((c = TAILQ_FIRST(&u->idle)) != NULL) {
        TAILQ_REMOVE(&u->idle, c, link);
        conn_close(c);
    }
    while (u->nspare_pipes > 0) {
        u->nspare_pipes--;
        close(u->spare_pipes[u->nspare_pipes][0]);
        close(u->spare_pipes[u->nspare_pipes][1]);
    }
    if (u->use_curl) {
        upstream_curl_deinit(u);
    }
    upstream_tls_deinit(u);
    event_free(u->reap_ev);
    free(u->host);
    free(u->port);
    free(u);
}

/* "METHOD path HTTP/1.1\r\n", the caller's lines, Content-Length when there is a body. */
static void
build_head(struct upstream_xfer *x, const struct upstream_xfer_args *a)
{
    size_t len, mlen = strlen(a->method), plen = strlen(a->path_query), i;
    int has_cl = 0;
    char clbuf[48];
    size_t cllen = 0;
    char *p;

    len = mlen + 1 + plen + 11;
    for (i = 0; a->headers[i] != NULL; i++) {
        len += strlen(a->headers[i]) + 2;
        if (strncasecmp(a->headers[i], "content-length:", 15) == 0) {
            has_cl = 1;
        }
    }
    if (!has_cl && a->body_length >= 0 && !x->is_head) {
        cllen = (size_t)snprintf(clbuf, sizeof(clbuf), "Content-Length: %lld\r\n",
                                 (long long)a->body_length);
    }
    len += cllen + 2;
    x->head = p = xmalloc(len);
    memcpy(p, a->method, mlen);
    p += mlen;
    *p++ = ' ';
    memcpy(p, a->path_query, plen);
    p += plen;
    memcpy(p, " HTTP/1.1\r\n", 11);
    p += 11;
    for (i = 0; a->headers[i] != NULL; i++) {
        size_t hl = strlen(a->headers[i]);

        memcpy(p, a->headers[i], hl);
        p += hl;
        *p++ = '\r';
        *p++ = '\n';
    }
    memcpy(p, clbuf, cllen);
    p += cllen;
    *p++ = '\r';
    *p++ = '\n';
    x->head_len = (size_t)(p - x->head);
}

struct upstream_xfer *
upstream_start(struct upstream *u, const struct upstream_xfer_args *a,
               const struct upstream_xfer_ops *ops, void *arg)
{
    struct upstream_xfer *x = xcalloc(1, sizeof(*x));
    struct upconn *c;

    x->u = u;
    x->ops = ops;
    x->arg = arg;
    x->start_us = upstream_now_us();
    x->xstate = XS_LIVE;
    if (u->use_curl) {
        if (upstream_curl_start(x, a) < 0) {
            free(x);
            return NULL;
        }
        TAILQ_INSERT_TAIL(&u->live, x, link);
        return x;
    }
    x->is_head = strcmp(a->method, "HEAD") == 0;
    x->body_left = a->body_length > 0 && !x->is_head ? a->body_length : 0;
    x->rs = RS_HEAD;
    build_head(x, a);
    TAILQ_INSERT_TAIL(&u->live, x, link);
    c = conn_take_idle(u);
    if (c == NULL) {
        c = conn_open(u);
    }
    if (c == NULL) {
        upstream_xfer_finish(x, upstream_err_connect); /* on_done comes from the loop */
        return x;
    }
    start_on(x, c);
    return x;
}

void
upstream_resume_body(struct upstream_xfer *x)
{
    if (x->aborted || x->xstate != XS_LIVE || !x->send_paused) {
        return;
    }
    x->send_paused = 0;
    if (x->u->use_curl) {
        upstream_curl_pause(x);
        return;
    }
    if (conn_ready(x->c)) {
        send_out(x);
    }
}

void
upstream_resume_response(struct upstream_xfer *x)
{
    struct upconn *c;

    if (x->aborted || x->xstate != XS_LIVE || !x->recv_paused) {
        return;
    }
    x->recv_paused = 0;
    if (x->u->use_curl) {
        upstream_curl_pause(x);
        return;
    }
    c = x->c;
    if (parse_input(x) < 0) {
        return;
    }
    if (x->recv_paused) {
        return;
    }
    if (c->eof) {
        conn_failed(x, upstream_err_io);
    } else {
        event_add(c->rev, NULL); /* it may have been taken off while IN was full */
        if (c->ssl != NULL && SSL_has_pending(c->ssl)) {
            event_active(c->rev, EV_READ, 0); /* bytes TLS holds: epoll will not say so */
        }
    }
}

void
upstream_abort(struct upstream_xfer *x)
{
    struct upstream *u = x->u;

    if (x->aborted) {
        return;
    }
    x->aborted = 1;
    sink_end(x); /* before the caller closes the socket it was writing to */
    if (x->c != NULL) {
        /* no more events for it; reap_ev closes it, cutting the body short */
        event_del(x->c->rev);
        conn_set_write(x->c, 0);
        x->c->x = NULL;
    }
    list_remove(x);
    x->xstate = XS_DEAD;
    TAILQ_INSERT_TAIL(&u->dead, x, link);
    event_active(u->reap_ev, 0, 0);
}

int64_t
upstream_first_byte_us(const struct upstream_xfer *x)
{
    return x->first_byte_us;
}
