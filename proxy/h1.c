/*
 * h1.c - HTTP/1.1 front end: one request at a time per connection, keep-alive.
 *
 *   READ_HEAD --head ok--> BODY --------------body done--> WAIT_RESP --send_end--> READ_HEAD
 *       |                   |  (req_body / req_body_end)       |
 *       |                   +--send_end before body done--> DISCARD (small rest) or CLOSING
 *       +--parse error / timeout / limit--> error response, CLOSING
 *
 *   CLOSING --flushed, body all read--> close
 *           --flushed, body may still come--> LINGER --client's EOF / quiet / time up--> close
 *
 * Request bodies are framed here (Content-Length or chunked) and handed to the req as they
 * arrive; the req pauses us when its buffer towards the store is full. Responses are
 * framed here too (Content-Length, chunked for unknown length, none for HEAD/204/304).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/pool.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "proxy/accesslog.h"
#include "proxy/conn.h"
#include "proxy/http1.h"
#include "proxy/req.h"
#include "proxy/s3err.h"
#include "proxy/worker.h"

/* Body left over after an early response is read and dropped up to this much, so the
 * connection can be kept; beyond it we close instead. */
#define H1_DISCARD_LIMIT (1024 * 1024)
#define H1_TOPUP (128 * 1024) /* body bytes read at once on a plain socket (top_up_body) */
#define H1_TOPUPS 4           /* reads per turn, so one fast upload cannot starve the others */
/* Lingering close: after an answer on a connection whose request body is still coming, read
 * and drop until the client closes, is quiet this long, or this much time has passed. */
#define H1_LINGER_QUIET_MS 2000
#define H1_LINGER_MAX_MS 10000

enum h1_state {
    H1_READ_HEAD = 0, /* waiting for / parsing a request head */
    H1_BODY,          /* request body flowing to the req */
    H1_WAIT_RESP,     /* body done, response still coming */
    H1_DISCARD,       /* response done, dropping the rest of the body */
    H1_CLOSING,       /* flushing the last bytes, then close */
    H1_LINGER,        /* answered and flushed; dropping what the client still sends */
};

struct h1_conn {
    struct conn *c;              /* the connection (borrowed; owns us) */
    enum h1_state state;         /* see diagram */
    struct pool pool;            /* head of the current request */
    struct http1_request hreq;   /* parsed head (slices into pool) */
    struct req *req;             /* current request; NULL once it released us */
    int64_t body_left;           /* Content-Length bytes still to read */
    int chunked;                 /* body uses chunked transfer coding */
    struct http1_chunked ck;     /* chunked decoder state */
    int body_done;               /* whole request body read */
    int64_t discarded;           /* bytes dropped in H1_DISCARD */
    int keep_alive;              /* connection survives this response */
    int head_only;               /* response carries no body (HEAD, 204, 304) */
    int resp_chunked;            /* response framed with chunked coding */
    int resp_close_delimited;    /* HTTP/1.0 with unknown length: close ends the body */
    int continue_sent;           /* "100 Continue" written */
    int paused;                  /* the req asked us to stop reading */
    int head_clock;              /* header timer runs from the first byte (not idle) */
    int resp_started;            /* a response head was written for the current request */
    int64_t rate_start_ms;       /* client_body_min_rate window start; 0 = not running */
    int64_t rate_bytes;          /* body bytes read in that window */
    int linger;                  /* CLOSING: the client may still be sending (LINGER next) */
    int64_t linger_end_ms;       /* H1_LINGER: close by then, whatever the client does */
    struct event *timer;         /* idle / header timeout (owned) */
    struct event *next_ev;       /* parses a pipelined request outside callbacks (owned) */
};

static void h1_read_cb(struct bufferevent *bev, void *arg);
static void h1_write_cb(struct bufferevent *bev, void *arg);
static void h1_event_cb(struct bufferevent *bev, short what, void *arg);
static void h1_process(struct h1_conn *h);

/* A response head built on the stack and handed to the output buffer in one piece. */
struct headbuf {
    char b[4096];            /* bytes not yet in out */
    size_t n;                /* used in b */
    struct evbuffer *out;    /* the connection's output (borrowed) */
};

static void
hb_flush(struct headbuf *hb)
{
    if (hb->n > 0) {
        evbuffer_add(hb->out, hb->b, hb->n);
        hb->n = 0;
    }
}

static void
hb_add(struct headbuf *hb, const char *p, size_t len)
{
    if (hb->n + len > sizeof(hb->b)) {
        hb_flush(hb);
        if (len > sizeof(hb->b)) {
            evbuffer_add(hb->out, p, len);
            return;
        }
    }
    memcpy(hb->b + hb->n, p, len);
    hb->n += len;
}

/* Decimal digits of V into BUF (at least 21 bytes, not terminated); returns their count. */
static size_t
fmt_u64(char *buf, uint64_t v)
{
    char t[21];
    size_t n = 0, i;

    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (i = 0; i < n; i++) {
        buf[i] = t[n - 1 - i];
    }
    return n;
}

static const char *
status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
    }
}

static void
set_timer(struct h1_conn *h, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

    evtimer_add(h->timer, &tv);
}

/* Closes now: the req (if any) learns the client is gone. */
static void
h1_close(struct h1_conn *h)
{
    struct req *r = h->req;

    h->req = NULL;
    if (r != NULL) {
        req_client_gone(r);
    }
    evtimer_del(h->timer);
    conn_close(h->c);
}

/* Read and dropped while lingering; the quiet timer starts again, up to the end. */
static void
h1_linger_read(struct h1_conn *h)
{
    struct evbuffer *in = bufferevent_get_input(h->c->bev);
    int64_t left = h->linger_end_ms - worker_now_ms(h->c->w);

    evbuffer_drain(in, evbuffer_get_length(in));
    if (left <= 0) {
        log_info("h1", "client %s still sending %d ms after its answer; closing", h->c->peer,
                 H1_LINGER_MAX_MS);
        h1_close(h);
        return;
    }
    set_timer(h, left < H1_LINGER_QUIET_MS ? left : H1_LINGER_QUIET_MS);
}

/*
 * The answer is out but the client may still be sending its body. Closing now, with its
 * bytes unread, makes the kernel answer them with a reset, and a client that gets the reset
 * before it has read our answer (lost segments, or a stack that drops unread data on a
 * reset) sees "connection reset" instead of our 403 or 503. So: send our FIN (plain TCP),
 * then read and drop until the client closes, goes quiet, or H1_LINGER_MAX_MS has passed.
 */
static void
h1_linger(struct h1_conn *h)
{
    struct bufferevent *bev = h->c->bev;

    h->state = H1_LINGER;
    if (!h->c->tls) {
        /* on TLS the answer said Connection: close; a FIN under OpenSSL would cut its
         * close_notify short */
        (void)shutdown(bufferevent_getfd(bev), SHUT_WR);
    }
    bufferevent_set_timeouts(bev, NULL, NULL);
    h->paused = 0;
    bufferevent_enable(bev, EV_READ);
    h->linger_end_ms = worker_now_ms(h->c->w) + H1_LINGER_MAX_MS;
    h1_linger_read(h); /* what already waits in the input, and the quiet timer */
}

/* The last bytes are out: close, or linger if the client may still be sending. */
static void
h1_flushed(struct h1_conn *h)
{
    if (h->linger) {
        h1_linger(h);
    } else {
        h1_close(h);
    }
}

/* Closes once the output buffer is flushed. */
static void
h1_close_after_flush(struct h1_conn *h)
{
    conn_push(h->c);
    /* bytes waiting, or a body not all read (a head was parsed: BODY, DISCARD) */
    h->linger = evbuffer_get_length(bufferevent_get_input(h->c->bev)) > 0 ||
                ((h->state == H1_BODY || h->state == H1_DISCARD) && !h->body_done);
    h->state = H1_CLOSING;
    h->keep_alive = 0;
    bufferevent_disable(h->c->bev, EV_READ);
    evtimer_del(h->timer);
    if (evbuffer_get_length(bufferevent_get_output(h->c->bev)) == 0) {
        h1_flushed(h);
    } else {
        /* a client that never reads must not hold us forever */
        set_timer(h, h->c->w->cf->client_send_timeout_ms);
    }
}

/* An error before any req exists (bad head, timeout): S3 XML, then close. */
static void
h1_error(struct h1_conn *h, int status, const char *code, const char *message)
{
    struct evbuffer *out = bufferevent_get_output(h->c->bev);
    struct pool p;
    char id[24];
    size_t len;
    char *body;

    pool_init(&p);
    worker_request_id(h->c->w, id);
    body = s3err_xml_code(&p, code, message, "", id, &len);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\n"
                        "Content-Length: %zu\r\nx-amz-request-id: %s\r\nConnection: close\r\n\r\n",
                        status, status_text(status), len, id);
    evbuffer_add(out, body, len);
    log_info("h1", "%s %s from %s: %d %s: %s", id, "request refused", h->c->peer, status, code,
             message);
    if (h->state == H1_READ_HEAD) {
        /* no req was made for this head, so nothing else logs the request we refused */
        struct accesslog_entry e = {
            .request_id = id, .client = h->c->peer, .proto = "HTTP/1.1", .access_key = "-",
            .method = SLICE_LIT("-"), .op = "-", .status = status, .error_code = code,
        };

        accesslog_write(h->c->w->srv, &e);
    }
    pool_deinit(&p);
    h1_close_after_flush(h);
}

/* Ready for the next request on a kept-alive connection. */
static void
h1_reset(struct h1_conn *h)
{
    pool_deinit(&h->pool);
    memset(&h->hreq, 0, sizeof(h->hreq));
    h->state = H1_READ_HEAD;
    h->req = NULL;
    h->body_left = 0;
    h->chunked = 0;
    h->body_done = 0;
    h->discarded = 0;
    h->head_only = 0;
    h->resp_chunked = 0;
    h->resp_close_delimited = 0;
    h->continue_sent = 0;
    h->paused = 0;
    h->head_clock = 0;
    h->resp_started = 0;
    h->rate_start_ms = 0;
    if (h->c->w->draining) {
        h1_close(h);
        return;
    }
    bufferevent_set_timeouts(h->c->bev, NULL, NULL);
    bufferevent_enable(h->c->bev, EV_READ);
    set_timer(h, h->c->w->cf->client_idle_timeout_ms);
    if (evbuffer_get_length(bufferevent_get_input(h->c->bev)) > 0) {
        event_active(h->next_ev, 0, 0); /* pipelined bytes: parse outside this call chain */
    }
}

static void
on_next(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    h1_process(arg);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct h1_conn *h = arg;

    (void)fd;
    (void)what;
    if (h->state == H1_READ_HEAD && h->head_clock) {
        log_info("h1", "client %s did not send a complete request head in time", h->c->peer);
        h1_error(h, 400, "RequestTimeout",
                 "Your socket connection to the server was not read from or written to within "
                 "the timeout period.");
        return;
    }
    h1_close(h);
}

/* ---- req -> front end ------------------------------------------------------------------------ */

static void
fe_send_continue(void *fe)
{
    struct h1_conn *h = fe;

    if (!h->continue_sent && h->hreq.minor == 1) {
        h->continue_sent = 1;
        evbuffer_add(bufferevent_get_output(h->c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        conn_push(h->c);
    }
}

static void
fe_consumed(void *fe, size_t n)
{
    (void)fe;
    (void)n;
}

static void
fe_pause_body(void *fe)
{
    struct h1_conn *h = fe;

    h->paused = 1;
    bufferevent_disable(h->c->bev, EV_READ);
}

static void
fe_resume_body(void *fe)
{
    struct h1_conn *h = fe;

    if (!h->paused) {
        return;
    }
    h->paused = 0;
    h->rate_start_ms = 0; /* time the store held us back does not count against the client */
    bufferevent_enable(h->c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_input(h->c->bev)) > 0) {
        event_active(h->next_ev, 0, 0);
    }
}

static void
fe_send_head(void *fe, int status, const struct http_header *hdrs, size_t n, int64_t clen)
{
    struct h1_conn *h = fe;
    struct evbuffer *out = bufferevent_get_output(h->c->bev);
    size_t i;

    h->resp_started = 1;
    h->head_only = slice_eq(h->hreq.method, SLICE_LIT("HEAD")) || status == 204 || status == 304;
    if (!h->body_done && h->hreq.expect_continue && !h->continue_sent) {
        /* the client waits for 100 Continue before sending its body and, given a final
         * answer instead, may never send it: no bytes on this connection can be trusted
         * to be body or next request */
        h->keep_alive = 0;
    } else if (!h->body_done && status >= 300) {
        /* an early answer while the client is still sending: keep the connection only if
         * the rest is small enough to read and drop */
        int64_t rest = h->chunked ? H1_DISCARD_LIMIT + 1 : h->body_left;

        if (rest > H1_DISCARD_LIMIT) {
            h->keep_alive = 0;
        }
    }
    {
        /* assembled with memcpy on the stack: printf per line was a visible share of a
         * small request's CPU */
        struct headbuf hb = {.out = out};
        char num[24];
        const char *text = status_text(status);

        hb_add(&hb, "HTTP/1.1 ", 9);
        hb_add(&hb, num, fmt_u64(num, (uint64_t)(status > 0 && status < 1000 ? status : 500)));
        hb_add(&hb, " ", 1);
        hb_add(&hb, text, strlen(text));
        hb_add(&hb, "\r\n", 2);
        for (i = 0; i < n; i++) {
            hb_add(&hb, hdrs[i].name.ptr, hdrs[i].name.len);
            hb_add(&hb, ": ", 2);
            hb_add(&hb, hdrs[i].value.ptr, hdrs[i].value.len);
            hb_add(&hb, "\r\n", 2);
        }
        if (clen >= 0 && (status != 204 && status != 304)) {
            hb_add(&hb, "Content-Length: ", 16);
            hb_add(&hb, num, fmt_u64(num, (uint64_t)clen));
            hb_add(&hb, "\r\n", 2);
        }
        hb_flush(&hb);
    }
    if (clen >= 0 && (status != 204 && status != 304)) {
        /* Content-Length went out above */
    } else if (!h->head_only) {
        if (h->hreq.minor == 1) {
            h->resp_chunked = 1;
            evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
        } else {
            h->resp_close_delimited = 1;
            h->keep_alive = 0;
        }
    }
    if (!h->keep_alive) {
        evbuffer_add(out, "Connection: close\r\n", 19);
    } else if (h->hreq.minor == 0) {
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    }
    evbuffer_add(out, "\r\n", 2);
    bufferevent_set_timeouts(h->c->bev, NULL, NULL);
    {
        struct timeval wt = {(time_t)(h->c->w->cf->client_send_timeout_ms / 1000),
                             (suseconds_t)((h->c->w->cf->client_send_timeout_ms % 1000) * 1000)};
        /* an early answer while the body still comes (or is read to be dropped) keeps the
         * body's read timeout: a client stalling there must not hold the connection */
        struct timeval bt = {(time_t)(h->c->w->cf->client_body_timeout_ms / 1000),
                             (suseconds_t)((h->c->w->cf->client_body_timeout_ms % 1000) * 1000)};

        bufferevent_set_timeouts(h->c->bev, h->body_done ? NULL : &bt, &wt);
    }
}

static void
fe_send_body(void *fe, struct evbuffer *data)
{
    struct h1_conn *h = fe;
    struct evbuffer *out = bufferevent_get_output(h->c->bev);
    size_t len = evbuffer_get_length(data);

    if (h->head_only || len == 0) {
        evbuffer_drain(data, len);
        return;
    }
    if (h->resp_chunked) {
        evbuffer_add_printf(out, "%zx\r\n", len);
        evbuffer_add_buffer(out, data);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add_buffer(out, data);
    }
    conn_push(h->c);
}

static void
fe_send_end(void *fe)
{
    struct h1_conn *h = fe;

    if (h->resp_chunked) {
        evbuffer_add(bufferevent_get_output(h->c->bev), "0\r\n\r\n", 5);
    }
    conn_push(h->c); /* a head-only answer has had no body to push it */
    h->req = NULL;
    if (!h->keep_alive || h->resp_close_delimited) {
        h1_close_after_flush(h);
    } else if (h->body_done) {
        h1_reset(h);
    } else {
        h->state = H1_DISCARD;
        if (h->paused) {
            h->paused = 0;
            bufferevent_enable(h->c->bev, EV_READ);
        }
        if (evbuffer_get_length(bufferevent_get_input(h->c->bev)) > 0) {
            event_active(h->next_ev, 0, 0);
        }
    }
}

static void
fe_abort(void *fe)
{
    struct h1_conn *h = fe;

    h->req = NULL;
    /* the response is incomplete: closing is the only way HTTP/1.1 can say so */
    evtimer_del(h->timer);
    conn_close(h->c);
}

static size_t
fe_pending(void *fe)
{
    struct h1_conn *h = fe;

    return evbuffer_get_length(bufferevent_get_output(h->c->bev));
}

/* The socket, for a Content-Length body on a plain connection with nothing queued in front
 * (req.h raw_fd). */
static int
fe_raw_fd(void *fe)
{
    struct h1_conn *h = fe;

    if (h->c->tls || !h->resp_started || h->head_only || h->resp_chunked) {
        return REQ_RAW_NONE;
    }
    if (evbuffer_get_length(bufferevent_get_output(h->c->bev)) > 0) {
        return REQ_RAW_LATER;
    }
    return bufferevent_getfd(h->c->bev);
}

static const struct req_fe_ops h1_ops = {
    .send_continue = fe_send_continue,
    .consumed = fe_consumed,
    .pause_body = fe_pause_body,
    .resume_body = fe_resume_body,
    .send_head = fe_send_head,
    .send_body = fe_send_body,
    .send_end = fe_send_end,
    .abort = fe_abort,
    .pending = fe_pending,
    .raw_fd = fe_raw_fd,
};

/* ---- parsing --------------------------------------------------------------------------------- */

static void
start_request(struct h1_conn *h)
{
    struct req_start_args a;
    struct timeval bt;

    h->keep_alive = h->hreq.keep_alive && !h->c->w->draining;
    h->chunked = h->hreq.chunked;
    h->body_left = h->hreq.content_length > 0 ? h->hreq.content_length : 0;
    h->body_done = !h->chunked && h->body_left == 0;
    if (h->chunked) {
        http1_chunked_init(&h->ck);
    }
    memset(&a, 0, sizeof(a));
    a.method = h->hreq.method;
    a.target = h->hreq.target;
    a.authority = h->hreq.host;
    a.hdrs = h->hreq.headers;
    a.nhdrs = h->hreq.nheaders;
    a.content_length = h->hreq.content_length;
    a.has_body = !h->body_done;
    a.expect_continue = h->hreq.expect_continue;
    a.proto = h->hreq.minor == 1 ? "HTTP/1.1" : "HTTP/1.0";
    a.client_addr = h->c->peer;
    h->state = h->body_done ? H1_WAIT_RESP : H1_BODY;
    evtimer_del(h->timer);
    bt.tv_sec = h->c->w->cf->client_body_timeout_ms / 1000;
    bt.tv_usec = (h->c->w->cf->client_body_timeout_ms % 1000) * 1000;
    bufferevent_set_timeouts(h->c->bev, h->body_done ? NULL : &bt, NULL);
    h->req = req_create(h->c->w, &h1_ops, h);
    req_start(h->req, &a);
    /* the req may have answered (and released us) already; state is then past BODY */
    if (h->req != NULL && h->state == H1_WAIT_RESP) {
        return;
    }
}

/* Parses a head from the input if complete. Returns 1 when a request started. */
static int
read_head(struct h1_conn *h)
{
    struct evbuffer *in = bufferevent_get_input(h->c->bev);
    const struct proxy_conf *cf = h->c->w->cf;
    struct http1_limits lim = {(size_t)cf->max_request_line, (size_t)cf->max_header_bytes,
                               (size_t)cf->max_header_count};
    struct http1_error err = {0, NULL, NULL};
    size_t avail = evbuffer_get_length(in), look, hl;
    const char *buf;

    if (avail == 0) {
        return 0;
    }
    if (!h->head_clock) {
        h->head_clock = 1;
        set_timer(h, cf->client_header_timeout_ms);
    }
    look = avail < lim.max_header_bytes + 4 ? avail : lim.max_header_bytes + 4;
    buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
    hl = http1_head_length(buf, look, &lim, &err);
    if (hl == 0) {
        if (err.status != 0) {
            h1_error(h, err.status, err.code, err.message);
        }
        return 0;
    }
    pool_init(&h->pool);
    if (http1_parse_scanned_head(buf, hl, &lim, &h->pool, &h->hreq, &err) != PX_OK) {
        h1_error(h, err.status, err.code, err.message);
        return 0;
    }
    /* the slices point into BUF: keep the head in the pool, then drop it from the input */
    {
        char *copy = pool_strndup(&h->pool, buf, hl);
        ptrdiff_t delta = copy - buf;
        size_t i;

#define REBASE(s) ((s).ptr = (s).ptr ? (s).ptr + delta : NULL)
        REBASE(h->hreq.method);
        REBASE(h->hreq.target);
        REBASE(h->hreq.host);
        for (i = 0; i < h->hreq.nheaders; i++) {
            REBASE(h->hreq.headers[i].name);
            REBASE(h->hreq.headers[i].value);
        }
#undef REBASE
    }
    evbuffer_drain(in, hl);
    start_request(h);
    return 1;
}

/*
 * client_body_min_rate: slowloris bodies. client_body_timeout bounds each pause, but a
 * client trickling a byte a second never pauses that long while it holds a connection to
 * the store (and, for replicated buckets, the key's lease). So over each window of
 * client_body_timeout the body must average at least client_body_min_rate bytes a second.
 * The window restarts whenever we resume reading after back-pressure. Returns 0 when the
 * client is too slow.
 */
static int
body_rate_ok(struct h1_conn *h, size_t n)
{
    const struct proxy_conf *cf = h->c->w->cf;
    int64_t now, elapsed;

    if (cf->client_body_min_rate <= 0 || cf->client_body_timeout_ms <= 0) {
        return 1;
    }
    now = worker_now_ms(h->c->w);
    if (h->rate_start_ms == 0) {
        h->rate_start_ms = now;
        h->rate_bytes = 0;
    }
    h->rate_bytes += (int64_t)n;
    elapsed = now - h->rate_start_ms;
    if (elapsed < cf->client_body_timeout_ms) {
        return 1;
    }
    if (h->rate_bytes * 1000 < cf->client_body_min_rate * elapsed) {
        return 0;
    }
    h->rate_start_ms = now;
    h->rate_bytes = 0;
    return 1;
}

/* The body came in below client_body_min_rate: 400 RequestTimeout (or, once a response
 * has started, just the close), and the req learns the client is gone. */
static void
body_too_slow(struct h1_conn *h)
{
    struct req *r = h->req;

    log_info("h1", "client %s sent its request body below client_body_min_rate (%lld bytes "
                   "in %lld ms); closing",
             h->c->peer, (long long)h->rate_bytes,
             (long long)h->c->w->cf->client_body_timeout_ms);
    h->req = NULL;
    if (r != NULL) {
        req_client_gone(r);
    }
    if (h->resp_started) {
        h1_close(h);
        return;
    }
    h1_error(h, 400, "RequestTimeout",
             "Your request body arrived slower than the server accepts (client_body_min_rate).");
}

/*
 * libevent 2.1's evbuffer_read() takes at most 4 KiB per call whatever the socket holds
 * (EVBUFFER_MAX_READ), so a 1 GiB upload was 262,144 readv calls, each with its own
 * FIONREAD and event-loop turn. While a body streams on a plain socket, read on from the
 * socket ourselves in one large readv. Nothing here is ever lost: EOF and errors are left
 * for the bufferevent, whose next read of the (still readable) socket reports them.
 */
static void
top_up_body(struct h1_conn *h, struct evbuffer *in)
{
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    ssize_t got;
    size_t left;
    int nv, i;

    if (h->c->tls || h->state != H1_BODY || h->paused || evbuffer_get_length(in) >= H1_TOPUP) {
        return;
    }
    /* a socket bufferevent keeps its input's end frozen (only its own read adds there) and
     * thaws it around that read: so do we, or reserve_space fails and nothing is read */
    evbuffer_unfreeze(in, 0);
    nv = evbuffer_reserve_space(in, (ev_ssize_t)H1_TOPUP, v, 2);
    if (nv > 0) {
        for (i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
        }
        got = readv(bufferevent_getfd(h->c->bev), iov, nv);
        left = got > 0 ? (size_t)got : 0;
        for (i = 0; i < nv; i++) {
            if (v[i].iov_len > left) {
                v[i].iov_len = left;
            }
            left -= v[i].iov_len;
        }
        evbuffer_commit_space(in, v, got > 0 ? nv : 0);
    }
    evbuffer_freeze(in, 0);
}

/* Feeds available body bytes to the req (or drops them in H1_DISCARD). */
static void
read_body(struct h1_conn *h)
{
    struct evbuffer *in = bufferevent_get_input(h->c->bev);
    struct evbuffer_iovec vec[8];
    int n, i, topups = 1;

    top_up_body(h, in);
    while (!h->body_done && !h->paused && evbuffer_get_length(in) > 0 &&
           (h->state == H1_BODY || h->state == H1_DISCARD)) {
        size_t used_total = 0;

        if (!h->chunked && h->state == H1_BODY && h->req != NULL && req_body_movable(h->req)) {
            /* the common case, without copying the bytes */
            size_t avail = evbuffer_get_length(in);
            size_t used = (int64_t)avail < h->body_left ? avail : (size_t)h->body_left;

            h->body_left -= (int64_t)used;
            if (h->body_left == 0) {
                h->body_done = 1;
            }
            req_body_move(h->req, in, used);
            if (h->c->closing || h->state != H1_BODY) {
                return;
            }
            if (!h->body_done && !body_rate_ok(h, used)) {
                body_too_slow(h);
                return;
            }
            if (!h->body_done && topups++ < H1_TOPUPS) {
                top_up_body(h, in);
            }
            continue;
        }
        n = evbuffer_peek(in, -1, NULL, vec, 8);
        if (n > 8) {
            n = 8;
        }
        for (i = 0; i < n && !h->body_done && !h->paused; i++) {
            const char *p = vec[i].iov_base;
            size_t len = vec[i].iov_len;

            while (len > 0 && !h->body_done) {
                struct slice data = SLICE_NULL;
                size_t used;

                if (h->chunked) {
                    int rc = http1_chunked_feed(&h->ck, p, len, &used, &data);

                    if (rc == PX_EAGAIN) {
                        used = len;
                    } else if (rc != PX_OK) {
                        evbuffer_drain(in, used_total);
                        if (h->req != NULL) {
                            struct req *r = h->req;

                            h->req = NULL;
                            req_client_gone(r);
                        }
                        h1_error(h, 400, "IncompleteBody", "Malformed chunked request body.");
                        return;
                    }
                    if (http1_chunked_done(&h->ck)) {
                        h->body_done = 1;
                    }
                } else {
                    used = (int64_t)len < h->body_left ? len : (size_t)h->body_left;
                    data = slice_make(p, used);
                    h->body_left -= (int64_t)used;
                    if (h->body_left == 0) {
                        h->body_done = 1;
                    }
                }
                p += used;
                len -= used;
                used_total += used;
                if (data.len > 0) {
                    if (h->state == H1_DISCARD) {
                        h->discarded += (int64_t)data.len;
                    } else if (h->req != NULL) {
                        req_body(h->req, data.ptr, data.len);
                    }
                }
                if (h->state == H1_DISCARD && h->discarded > H1_DISCARD_LIMIT) {
                    evbuffer_drain(in, used_total);
                    h1_close(h);
                    return;
                }
                if (h->c->closing || (h->state != H1_BODY && h->state != H1_DISCARD)) {
                    /* the req answered and the connection moved on, or closed */
                    evbuffer_drain(in, used_total);
                    return;
                }
            }
        }
        evbuffer_drain(in, used_total);
        if (used_total == 0) {
            break;
        }
        if (h->state == H1_BODY && !h->body_done && !body_rate_ok(h, used_total)) {
            body_too_slow(h);
            return;
        }
        if (!h->body_done && topups++ < H1_TOPUPS) {
            top_up_body(h, in);
        }
    }
    if (h->body_done) {
        if (h->state == H1_BODY) {
            h->state = H1_WAIT_RESP;
            bufferevent_set_timeouts(h->c->bev, NULL, NULL);
            if (h->req != NULL) {
                req_body_end(h->req);
            }
        } else if (h->state == H1_DISCARD) {
            h1_reset(h);
        }
    }
}

static void
h1_process(struct h1_conn *h)
{
    if (h->c->closing) {
        return;
    }
    switch (h->state) {
    case H1_READ_HEAD:
        if (read_head(h) && !h->c->closing && h->state == H1_BODY) {
            read_body(h);
        }
        break;
    case H1_BODY:
    case H1_DISCARD:
        read_body(h);
        break;
    case H1_WAIT_RESP:
    case H1_CLOSING:
        /* pipelined bytes wait in the input (bounded by the read watermark) */
        break;
    case H1_LINGER:
        h1_linger_read(h);
        break;
    }
}

/* ---- bufferevent callbacks ------------------------------------------------------------------- */

static void
h1_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    h1_process(arg);
}

static void
h1_write_cb(struct bufferevent *bev, void *arg)
{
    struct h1_conn *h = arg;

    conn_write_idle(h->c); /* back to conn_push's direct writes once empty */
    if (h->state == H1_CLOSING && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        h1_flushed(h);
        return;
    }
    if (h->req != NULL) {
        req_client_writable(h->req);
    }
}

static void
h1_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct h1_conn *h = arg;

    (void)bev;
    if (what & BEV_EVENT_TIMEOUT) {
        log_info("h1", "client %s timed out while %s", h->c->peer,
                 (what & BEV_EVENT_READING) ? "sending the request body" : "reading the response");
    }
    h1_close(h);
}

/* ---- conn.c entry points --------------------------------------------------------------------- */

int
h1_conn_start(struct conn *c)
{
    struct h1_conn *h = xcalloc(1, sizeof(*h));
    const struct proxy_conf *cf = c->w->cf;

    h->c = c;
    c->h1 = h;
    c->proto = CONN_H1;
    h->timer = evtimer_new(c->w->evb, on_timer, h);
    h->next_ev = event_new(c->w->evb, -1, 0, on_next, h);
    pool_init(&h->pool);
    h->state = H1_READ_HEAD;
    /* never hold more unparsed input than one head (pipelining is bounded by this) */
    bufferevent_setwatermark(c->bev, EV_READ, 0, (size_t)cf->max_header_bytes + 65536);
    bufferevent_setwatermark(c->bev, EV_WRITE, REQ_CLIENT_HIGH_WATERMARK / 2, 0);
    bufferevent_setcb(c->bev, h1_read_cb, h1_write_cb, h1_event_cb, h);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    conn_direct_writes(c); /* answers go out through conn_push() on plain connections */
    set_timer(h, cf->client_idle_timeout_ms);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        h1_process(h);
    }
    return 0;
}

void
h1_conn_drain(struct conn *c)
{
    struct h1_conn *h = c->h1;

    if ((h->state == H1_READ_HEAD && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0) ||
        h->state == H1_DISCARD || h->state == H1_LINGER) {
        /* idle, or only dropping the rest of an answered request's body */
        h1_close(h);
    } else {
        h->keep_alive = 0;
    }
}

void
h1_conn_free(struct h1_conn *h)
{
    if (h == NULL) {
        return;
    }
    event_free(h->timer);
    event_free(h->next_ev);
    pool_deinit(&h->pool);
    free(h);
}
