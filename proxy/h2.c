/*
 * h2.c - HTTP/2 front end: one nghttp2 server session per connection, one req per stream.
 *
 * A stream (struct h2_stream) is created by its first HEADERS frame and freed only by
 * nghttp2's on_stream_close or by connection teardown:
 *
 *   begin_headers --fields--> END_HEADERS --+--> req_start() --DATA--> req_body()* --END_STREAM-->
 *                                           |        |                               req_body_end()
 *                                           |        | ops: send_head -> send_body* -> send_end
 *                                           |        |                             \-> abort (RST)
 *                                           |        v
 *                                           |   s->req = NULL: neither side calls the other again
 *                                           +--> over a limit: S3 error answered here, no req
 *
 *   RST_STREAM from the client, a protocol error or a lost connection while s->req is set:
 *   req_client_gone(), once.     on_stream_close (both directions done) --> stream_free()
 *
 * Request flow control follows the store: WINDOW_UPDATE is only sent for bytes the req
 * reports handed to the store (ops->consumed), so a slow store closes the client's window.
 * Responses: frames are pulled from nghttp2 only while the socket buffer is below
 * H2_OUT_HIGH; the write callback pulls more. Nothing is sent from inside a req callback:
 * the ops queue frames in nghttp2 and schedule pump_ev, which sends from a fresh loop turn.
 *
 * Timers: client_idle_timeout (no stream: GOAWAY), client_header_timeout (one unfinished
 * header block: GOAWAY), client_body_timeout per stream (no DATA while our window is open:
 * RST_STREAM), client_send_timeout (bufferevent write timeout: close).
 *
 * Abuse limits (proxy.conf.example documents each directive and what the client sees):
 *   h2_max_concurrent_streams      more streams at once: nghttp2 answers GOAWAY(PROTOCOL_ERROR)
 *   h2_max_resets_per_second/min   stream resets, received (CVE-2023-44487 "rapid reset") or
 *                                  provoked (CVE-2025-8671 "made you reset"): GOAWAY
 *                                  (ENHANCE_YOUR_CALM), see count_reset()
 *   h2_max_pending_acks            SETTINGS/PING ACKs queued (a flooder that does not read),
 *   h2_max_continuations           CONTINUATION frames after one HEADERS: both stop reading,
 *                                  GOAWAY(ENHANCE_YOUR_CALM), close (see input_refused())
 *   max_header_bytes/count         the decoded header list (HPACK can expand a small block a
 *                                  thousandfold): stored no further, 400 at END_HEADERS
 *   client_header_timeout          one header block, CONTINUATIONs included
 *   client_body_min_rate           a stream's DATA trickled below it: 400 RequestTimeout (or
 *                                  RST_STREAM once the response started), see body_too_slow()
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "common/log.h"
#include "common/pool.h"
#include "common/slice.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "proxy/conn.h"
#include "proxy/http1.h"
#include "proxy/req.h"
#include "proxy/s3err.h"
#include "proxy/worker.h"

/* Socket output above which no more frames are pulled from nghttp2; the write callback
 * (low watermark H2_OUT_LOW) pulls the next batch. */
#define H2_OUT_HIGH (64 * 1024)
#define H2_OUT_LOW (16 * 1024)
/* A stream told pending() >= REQ_CLIENT_HIGH_WATERMARK is sent req_client_writable() once
 * its pending() falls below this. pending() includes the socket buffer, which never exceeds
 * H2_OUT_HIGH plus one frame, so the socket alone can never keep a stream blocked. */
#define H2_STREAM_LOW (REQ_CLIENT_HIGH_WATERMARK / 2)
_Static_assert(H2_OUT_HIGH + 16384 + 9 < H2_STREAM_LOW, "socket share must stay below low mark");
/* Connection receive window, in stream windows (one stream window = max_inflight_body, the
 * most one req buffers). aws-cli uploads 10 parts at once; 8 full windows keep most of them
 * streaming while a connection never makes the proxy buffer more than 8 requests' worth. */
#define H2_CONN_WINDOW_STREAMS 8
/* Hard ceiling on one request head we store, whatever max_header_bytes says. */
#define H2_HEAD_HARD_MAX (1024 * 1024)
/* Between the shutdown notice and the final GOAWAY: requests the client sent before it saw
 * the notice must still arrive (one round trip, generously). */
#define H2_DRAIN_GRACE_MS 1000
/* iovecs looked at per evbuffer_peek() when feeding nghttp2. */
#define H2_NVEC 16
/* A response that ends before the request body: if at most this much body is still to come
 * (by content-length) it is read and dropped, so clients that treat an early RST_STREAM as an
 * error (curl 7.88) still see the answer; beyond it, or with no content-length, the upload
 * is stopped with RST_STREAM(NO_ERROR). Same bound as h1's H1_DISCARD_LIMIT. */
#define H2_DISCARD_LIMIT (1024 * 1024)

struct h2_conn;

/* Where one received field sits in h2_head.buf (offsets: buf moves when it grows). */
struct h2_field {
    uint32_t name_off;  /* name bytes, NUL-terminated */
    uint32_t name_len;  /* without the NUL */
    uint32_t value_off; /* value bytes, NUL-terminated */
    uint32_t value_len; /* without the NUL */
};

/* A request head as nghttp2 decoded it, pseudo-headers included, in arrival order. */
struct h2_head {
    char *buf;               /* names and values back to back, each NUL-terminated (owned) */
    size_t len;              /* bytes used in buf */
    size_t cap;              /* bytes allocated for buf */
    struct h2_field *fields; /* one per field (owned) */
    size_t nfields;          /* entries used in fields */
    size_t capfields;        /* entries allocated */
    size_t nregular;         /* fields that are not pseudo-headers */
    size_t list_size;        /* RFC 9113 6.5.2 size so far: name + value + 32 per field */
    int over_limit;          /* max_header_bytes or max_header_count exceeded: rest ignored */
};

/* A response head built for nghttp2 (names lowercased), ready to submit or held. */
struct h2_nvbuf {
    nghttp2_nv *nv; /* name/value pairs pointing into buf (owned) */
    size_t n;       /* entries in nv */
    char *buf;      /* the bytes nv points to (owned) */
};

struct h2_stream {
    struct h2_conn *h;                   /* owning connection (borrowed) */
    int32_t id;                          /* HTTP/2 stream id */
    struct req *req;                     /* live req; NULL before req_start, after send_end /
                                            abort / req_client_gone, or for local answers */
    struct h2_head head;                 /* request head as received (owned) */
    struct http_header *hdrs;            /* regular fields as slices into head.buf (owned) */
    struct evbuffer *out;                /* response body waiting for DATA frames (owned) */
    size_t unconsumed;                   /* bytes given to req_body() not yet credited back */
    int64_t content_length;              /* request content-length, -1 when absent */
    int64_t received;                    /* request DATA payload bytes so far */
    int64_t rate_start_ms;               /* client_body_min_rate window start; 0 = none */
    int64_t rate_bytes;                  /* DATA payload bytes in that window */
    struct event *body_timer;            /* client_body_timeout: while the req waits for body
                                            (paused while our window is shut), then while
                                            dropping a rest (owned; NULL until used) */
    struct h2_nvbuf held;                /* body-less response waiting for send_end (owned) */
    TAILQ_ENTRY(h2_stream) link;         /* in h->streams */
    TAILQ_ENTRY(h2_stream) blocked_link; /* in h->blocked while blocked */
    unsigned head_done : 1;              /* END_HEADERS of the request seen */
    unsigned is_head : 1;                /* :method is HEAD: the response has no body */
    unsigned head_sent : 1;              /* send_head called or a local answer submitted */
    unsigned body_eof : 1;               /* last body byte queued: EOF once out drains */
    unsigned remote_ended : 1;           /* client sent END_STREAM */
    unsigned reset_by_us : 1;            /* we submitted RST_STREAM for this stream */
    unsigned blocked : 1;                /* the req saw pending() >= REQ_CLIENT_HIGH_WATERMARK */
};

/* Fixed-window event counter (one-second and one-minute windows). */
struct h2_rate {
    int64_t sec_start; /* start of the current second, ms */
    uint32_t sec_n;    /* events in it */
    int64_t min_start; /* start of the current minute, ms */
    uint32_t min_n;    /* events in it */
};

struct h2_conn {
    struct conn *c;                  /* client connection (borrowed; it owns us) */
    nghttp2_session *ngh;            /* the session; NULL once torn down (owned) */
    TAILQ_HEAD(, h2_stream) streams; /* every stream we hold state for (owned) */
    TAILQ_HEAD(, h2_stream) blocked; /* streams owed a req_client_writable() */
    size_t nstreams;                 /* length of streams */
    int32_t head_stream;             /* stream whose header block is being received */
    struct event *pump_ev;           /* deferred send, scheduled by req ops (owned) */
    struct event *idle_timer;        /* client_idle_timeout while no stream exists (owned) */
    struct event *header_timer;      /* client_header_timeout for one header block (owned) */
    struct event *drain_timer;       /* grace between shutdown notice and GOAWAY (owned) */
    struct h2_rate resets;           /* RST_STREAM received or provoked */
    unsigned draining : 1;           /* h2_conn_drain() called */
    unsigned calmed : 1;             /* GOAWAY(ENHANCE_YOUR_CALM) already submitted */
    unsigned refused : 1;            /* input_refused(): nothing more is read */
    unsigned close_when_flushed : 1; /* session done: close once the socket buffer drains */
    unsigned fatal : 1;              /* a req op hit a fatal nghttp2 error: pump tears down */
    unsigned dead : 1;               /* torn down: no session, no streams */
};

static const struct req_fe_ops stream_ops;

/* ---- small helpers ----------------------------------------------------------------------- */

static struct timeval
ms_to_tv(int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

    return tv;
}

/* Sends from a fresh loop turn: callers are usually inside a req or nghttp2 callback. */
static void
pump_later(struct h2_conn *h)
{
    if (!h->dead) {
        event_active(h->pump_ev, EV_TIMEOUT, 0);
    }
}

static void
arm_idle(struct h2_conn *h)
{
    int64_t ms = h->c->w->cf->client_idle_timeout_ms;

    if (ms > 0 && !h->dead) {
        struct timeval tv = ms_to_tv(ms);

        evtimer_add(h->idle_timer, &tv);
    }
}

static struct h2_stream *
stream_get(struct h2_conn *h, int32_t id)
{
    return id != 0 ? nghttp2_session_get_stream_user_data(h->ngh, id) : NULL;
}

/* Records a fatal nghttp2 error seen inside a req op; the next pump tears down. */
static void
check_rv(struct h2_conn *h, int rv, const char *what)
{
    if (rv != 0 && nghttp2_is_fatal(rv)) {
        log_warn("h2", "%s: %s: %s", h->c->peer, what, nghttp2_strerror(rv));
        h->fatal = 1;
        pump_later(h);
    }
}

static void
reset_stream(struct h2_stream *s, uint32_t code)
{
    s->reset_by_us = 1;
    check_rv(s->h, nghttp2_submit_rst_stream(s->h->ngh, NGHTTP2_FLAG_NONE, s->id, code),
             "RST_STREAM");
    pump_later(s->h);
}

/* Credits N received bytes back to the client (WINDOW_UPDATE once enough accumulate). */
static void
credit(struct h2_stream *s, size_t n)
{
    if (n > 0) {
        check_rv(s->h, nghttp2_session_consume(s->h->ngh, s->id, n), "consume");
        pump_later(s->h);
    }
}

static void
unblock(struct h2_stream *s)
{
    if (s->blocked) {
        TAILQ_REMOVE(&s->h->blocked, s, blocked_link);
        s->blocked = 0;
    }
}

static void on_body_timeout(evutil_socket_t fd, short what, void *arg);

/* (Re)starts the client_body_timeout clock of S. */
static void
body_timer_arm(struct h2_stream *s)
{
    int64_t ms = s->h->c->w->cf->client_body_timeout_ms;
    struct timeval tv = ms_to_tv(ms > 0 ? ms : 60000);

    if (s->body_timer == NULL) {
        s->body_timer = evtimer_new(s->h->c->w->evb, on_body_timeout, s);
    }
    evtimer_add(s->body_timer, &tv);
}

static void
body_timer_stop(struct h2_stream *s)
{
    if (s->body_timer != NULL) {
        evtimer_del(s->body_timer);
    }
}

/* The req let go (send_end / abort): it will not call consumed() again, so whatever it
 * still holds uncredited is credited now, and later DATA is credited on arrival. */
static void
release_req(struct h2_stream *s)
{
    s->req = NULL;
    unblock(s);
    body_timer_stop(s);
    credit(s, s->unconsumed);
    s->unconsumed = 0;
}

/* May the client send DATA on S right now, as far as our windows go? */
static int
client_can_send(struct h2_stream *s)
{
    nghttp2_session *ngh = s->h->ngh;
    int32_t st = nghttp2_session_get_stream_effective_local_window_size(ngh, s->id) -
                 nghttp2_session_get_stream_effective_recv_data_length(ngh, s->id);
    int32_t co = nghttp2_session_get_effective_local_window_size(ngh) -
                 nghttp2_session_get_effective_recv_data_length(ngh);

    return st > 0 && co > 0;
}

/* No request body for client_body_timeout. Like h1 closing the connection, the stream is
 * reset and the req told the client is gone; time the store held our window shut does not
 * count. While dropping a rest after the response, the stream is just reset. */
static void
on_body_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct h2_stream *s = arg;
    struct req *r = s->req;

    (void)fd;
    (void)what;
    if (s->h->dead || s->reset_by_us || s->remote_ended) {
        return;
    }
    if (r == NULL) {
        reset_stream(s, NGHTTP2_NO_ERROR);
        return;
    }
    if (!client_can_send(s)) {
        body_timer_arm(s);
        return;
    }
    log_info("h2", "%s: stream %d sent no request body for client_body_timeout; reset",
             s->h->c->peer, s->id);
    release_req(s);
    req_client_gone(r);
    reset_stream(s, NGHTTP2_CANCEL);
}

/* Bytes of this stream's response not yet on the wire (its DATA queue plus the socket). */
static size_t
stream_pending(const struct h2_stream *s)
{
    return evbuffer_get_length(s->out) + evbuffer_get_length(bufferevent_get_output(s->h->c->bev));
}

/* ---- rate limits ------------------------------------------------------------------------- */

/* Counts one event; returns 1 when a limit is exceeded. */
static int
rate_hit(struct h2_rate *r, int64_t now, uint32_t per_sec, uint32_t per_min)
{
    if (now - r->sec_start >= 1000) {
        r->sec_start = now;
        r->sec_n = 0;
    }
    if (now - r->min_start >= 60000) {
        r->min_start = now;
        r->min_n = 0;
    }
    r->sec_n++;
    r->min_n++;
    return r->sec_n > per_sec || r->min_n > per_min;
}

/* Called from nghttp2 callbacks: terminate_session only queues the GOAWAY. */
static void
count_reset(struct h2_conn *h, const char *what)
{
    const struct proxy_conf *cf = h->c->w->cf;

    uint32_t per_sec = cf->h2_max_resets_per_second > 0 ? (uint32_t)cf->h2_max_resets_per_second
                                                        : 100;
    uint32_t per_min = cf->h2_max_resets_per_minute > 0 ? (uint32_t)cf->h2_max_resets_per_minute
                                                        : 1000;

    if (h->calmed || !rate_hit(&h->resets, worker_now_ms(h->c->w), per_sec, per_min)) {
        return;
    }
    h->calmed = 1;
    log_warn("h2",
             "%s: too many stream resets (%s: %u in 1s, %u in 1m); GOAWAY "
             "ENHANCE_YOUR_CALM",
             h->c->peer, what, h->resets.sec_n, h->resets.min_n);
    nghttp2_session_terminate_session(h->ngh, NGHTTP2_ENHANCE_YOUR_CALM);
}

/* ---- streams ----------------------------------------------------------------------------- */

static struct h2_stream *
stream_new(struct h2_conn *h, int32_t id)
{
    struct h2_stream *s = xcalloc(1, sizeof(*s));

    s->h = h;
    s->id = id;
    s->content_length = -1;
    s->out = evbuffer_new();
    if (s->out == NULL) {
        abort(); /* allocation policy: small fixed-size allocations abort on OOM */
    }
    TAILQ_INSERT_TAIL(&h->streams, s, link);
    h->nstreams++;
    evtimer_del(h->idle_timer);
    return s;
}

static void
nvbuf_free(struct h2_nvbuf *b)
{
    xfree(&b->nv);
    xfree(&b->buf);
    b->n = 0;
}

/* Memory only: never calls the req or nghttp2 (callers have done that). */
static void
stream_free(struct h2_stream *s)
{
    struct h2_conn *h = s->h;

    unblock(s);
    TAILQ_REMOVE(&h->streams, s, link);
    h->nstreams--;
    xfree(&s->head.buf);
    xfree(&s->head.fields);
    xfree(&s->hdrs);
    nvbuf_free(&s->held);
    evbuffer_free(s->out);
    if (s->body_timer != NULL) {
        event_free(s->body_timer);
    }
    free(s);
    if (h->nstreams == 0) {
        arm_idle(h);
    }
}

/* ---- request head ------------------------------------------------------------------------ */

/* Makes room for N more bytes, so pointers into buf stay valid while they are appended. */
static void
head_reserve(struct h2_head *hd, size_t n)
{
    if (hd->len + n > hd->cap) {
        hd->cap = (hd->len + n) * 2 < 512 ? 512 : (hd->len + n) * 2;
        hd->buf = xrealloc(hd->buf, hd->cap);
    }
}

/* Appends P (N bytes) and a NUL: req.c may read a slice's ptr as a C string. */
static uint32_t
head_put(struct h2_head *hd, const void *p, size_t n)
{
    uint32_t off = (uint32_t)hd->len;

    head_reserve(hd, n + 1);
    memmove(hd->buf + hd->len, p, n);
    hd->buf[hd->len + n] = '\0';
    hd->len += n + 1;
    return off;
}

static void
head_add(struct h2_head *hd, const void *name, size_t namelen, const void *value, size_t valuelen)
{
    struct h2_field *f;

    if (hd->nfields == hd->capfields) {
        hd->capfields = hd->capfields ? hd->capfields * 2 : 16;
        hd->fields = xrealloc(hd->fields, hd->capfields * sizeof(*hd->fields));
    }
    f = &hd->fields[hd->nfields++];
    f->name_off = head_put(hd, name, namelen);
    f->name_len = (uint32_t)namelen;
    f->value_off = head_put(hd, value, valuelen);
    f->value_len = (uint32_t)valuelen;
}

static struct slice
field_name(const struct h2_head *hd, size_t i)
{
    return slice_make(hd->buf + hd->fields[i].name_off, hd->fields[i].name_len);
}

static struct slice
field_value(const struct h2_head *hd, size_t i)
{
    return slice_make(hd->buf + hd->fields[i].value_off, hd->fields[i].value_len);
}

/* Largest request head we accept: max_header_bytes, as RFC 9113 counts a header list. */
static size_t
head_limit(const struct proxy_conf *cf)
{
    if (cf->max_header_bytes <= 0 || cf->max_header_bytes > H2_HEAD_HARD_MAX) {
        return H2_HEAD_HARD_MAX;
    }
    return (size_t)cf->max_header_bytes;
}

/* ---- responses --------------------------------------------------------------------------- */

/* Hop-by-hop fields HTTP/2 forbids (RFC 9113 8.2.2), pseudo-header look-alikes, and
 * content-length, which comes from the send_head argument instead. */
static int
drop_response_header(struct slice name)
{
    static const char *const drop[] = {"connection",        "keep-alive", "proxy-connection", "te",
                                       "transfer-encoding", "upgrade",    "content-length"};
    size_t i;

    if (name.len == 0 || name.ptr[0] == ':') {
        return 1;
    }
    for (i = 0; i < sizeof(drop) / sizeof(drop[0]); i++) {
        if (slice_eq_nocase(name, slice_cstr(drop[i]))) {
            return 1;
        }
    }
    return 0;
}

/* Copies one field into B at *P, the name lowercased (HTTP/2 requires lowercase names). */
static void
nv_add(struct h2_nvbuf *b, char **p, struct slice name, struct slice value)
{
    nghttp2_nv *nv = &b->nv[b->n++];
    size_t i;

    for (i = 0; i < name.len; i++) {
        char ch = name.ptr[i];

        (*p)[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
    }
    nv->name = (uint8_t *)*p;
    nv->namelen = name.len;
    *p += name.len;
    memcpy(*p, value.ptr, value.len);
    nv->value = (uint8_t *)*p;
    nv->valuelen = value.len;
    *p += value.len;
    nv->flags = NGHTTP2_NV_FLAG_NONE; /* nghttp2 copies both at submit time */
}

/* ":status", HDRS minus drop_response_header(), then content-length when >= 0. */
static void
nvbuf_build(struct h2_nvbuf *b, int status, const struct http_header *hdrs, size_t nhdrs,
            int64_t content_length)
{
    char num[24];
    size_t cap = 64, i;
    char *p;

    for (i = 0; i < nhdrs; i++) {
        cap += hdrs[i].name.len + hdrs[i].value.len;
    }
    b->nv = xmalloc((nhdrs + 2) * sizeof(*b->nv));
    b->buf = xmalloc(cap);
    b->n = 0;
    p = b->buf;
    snprintf(num, sizeof(num), "%03d", status);
    nv_add(b, &p, SLICE_LIT(":status"), slice_cstr(num));
    for (i = 0; i < nhdrs; i++) {
        if (!drop_response_header(hdrs[i].name)) {
            nv_add(b, &p, hdrs[i].name, hdrs[i].value);
        }
    }
    if (content_length >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, content_length);
        nv_add(b, &p, SLICE_LIT("content-length"), slice_cstr(num));
    }
}

/* nghttp2 pulls DATA payload from s->out; DEFERRED until the req queues more or ends. */
static ssize_t
data_read(nghttp2_session *ngh, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
          nghttp2_data_source *src, void *arg)
{
    struct h2_stream *s = src->ptr;
    int n = 0;

    (void)ngh;
    (void)id;
    (void)arg;
    if (evbuffer_get_length(s->out) == 0 && !s->body_eof) {
        return NGHTTP2_ERR_DEFERRED;
    }
    if (evbuffer_get_length(s->out) > 0) {
        n = evbuffer_remove(s->out, buf, length);
        if (n < 0) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream only */
        }
    }
    if (s->body_eof && evbuffer_get_length(s->out) == 0) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return n;
}

static void
submit_response(struct h2_stream *s, const nghttp2_nv *nv, size_t n, int with_body)
{
    nghttp2_data_provider prd;
    int rv;

    prd.source.ptr = s;
    prd.read_callback = data_read;
    s->head_sent = 1;
    rv = nghttp2_submit_response(s->h->ngh, s->id, nv, n, with_body ? &prd : NULL);
    if (rv != 0) {
        log_warn("h2", "%s: stream %d: response not submitted: %s", s->h->c->peer, s->id,
                 nghttp2_strerror(rv));
        if (nghttp2_is_fatal(rv)) {
            check_rv(s->h, rv, "submit_response");
        } else {
            reset_stream(s, NGHTTP2_INTERNAL_ERROR);
        }
    }
    pump_later(s->h);
}

/* Answers a request we refuse before any req exists, with the same S3 XML as h1. */
static void
respond_error(struct h2_stream *s, enum s3err e, const char *message)
{
    struct h2_nvbuf b = {NULL, 0, NULL};
    struct http_header hv[2];
    struct pool p;
    char id[24];
    size_t len;
    char *body;

    pool_init(&p);
    worker_request_id(s->h->c->w, id);
    body = s3err_xml(&p, e, message, "", id, &len);
    hv[0] = (struct http_header){SLICE_LIT("content-type"), SLICE_LIT("application/xml")};
    hv[1] = (struct http_header){SLICE_LIT("x-amz-request-id"), slice_cstr(id)};
    nvbuf_build(&b, s3err_status(e), hv, 2, (int64_t)len);
    if (!s->is_head) {
        evbuffer_add(s->out, body, len);
    }
    s->body_eof = 1;
    submit_response(s, b.nv, b.n, !s->is_head);
    log_info("h2", "%s request refused from %s stream %d: %d %s: %s", id, s->h->c->peer, s->id,
             s3err_status(e), s3err_code(e), message);
    nvbuf_free(&b);
    pool_deinit(&p);
}

/* ---- req ops (called by the req; fe is the stream) ---------------------------------------- */

static void
op_send_continue(void *fe)
{
    (void)fe; /* HTTP/2 clients do not wait for 100-continue before DATA */
}

static void
op_consumed(void *fe, size_t n)
{
    struct h2_stream *s = fe;

    if (s->h->dead || s->req == NULL) {
        return;
    }
    if (n > s->unconsumed) {
        n = s->unconsumed; /* never credit more than the client sent: the window must not grow */
    }
    s->unconsumed -= n;
    credit(s, n);
    if (n > 0 && !s->remote_ended) {
        body_timer_arm(s); /* the window opens again: the client gets a full period */
    }
}

static void
op_pause_body(void *fe)
{
    (void)fe; /* the window closes by itself while consumed() is not called */
}

static void
op_resume_body(void *fe)
{
    (void)fe;
}

static void
op_send_head(void *fe, int status, const struct http_header *hdrs, size_t nhdrs,
             int64_t content_length)
{
    struct h2_stream *s = fe;
    struct h2_nvbuf b = {NULL, 0, NULL};
    int no_body;

    if (s->h->dead || s->req == NULL || s->head_sent) {
        return;
    }
    if (status < 200 || status > 999) {
        log_warn("h2", "%s: stream %d: status %d is not a final status; sending 502", s->h->c->peer,
                 s->id, status);
        status = 502;
    }
    no_body = s->is_head || status == 204 || status == 304 || content_length == 0;
    nvbuf_build(&b, status, hdrs, nhdrs, status == 204 ? -1 : content_length);
    if (no_body) {
        /* HEADERS with END_STREAM wait for send_end: sent now, both directions could close
         * and on_stream_close would report a client that never left as gone. */
        s->held = b;
        s->head_sent = 1;
        return;
    }
    submit_response(s, b.nv, b.n, 1);
    nvbuf_free(&b);
}

static void
op_send_body(void *fe, struct evbuffer *data)
{
    struct h2_stream *s = fe;

    if (s->h->dead || s->req == NULL || s->held.nv != NULL) {
        evbuffer_drain(data, evbuffer_get_length(data)); /* nowhere to go: HEAD, 204, 304 */
        return;
    }
    evbuffer_add_buffer(s->out, data);
    /* not deferred right now (first call, or nghttp2 is mid-read): not an error */
    check_rv(s->h, nghttp2_session_resume_data(s->h->ngh, s->id), "resume_data");
    pump_later(s->h);
}

static void
op_send_end(void *fe)
{
    struct h2_stream *s = fe;

    if (s->h->dead || s->req == NULL) {
        return;
    }
    release_req(s);
    s->body_eof = 1;
    if (!s->head_sent) {
        log_warn("h2", "%s: stream %d: response ended without a head", s->h->c->peer, s->id);
        reset_stream(s, NGHTTP2_INTERNAL_ERROR);
    } else if (s->held.nv != NULL) {
        submit_response(s, s->held.nv, s->held.n, 0);
        nvbuf_free(&s->held);
    } else {
        check_rv(s->h, nghttp2_session_resume_data(s->h->ngh, s->id), "resume_data");
        pump_later(s->h);
    }
}

static void
op_abort(void *fe)
{
    struct h2_stream *s = fe;

    if (s->h->dead || s->req == NULL) {
        return;
    }
    release_req(s);
    nvbuf_free(&s->held);
    evbuffer_drain(s->out, evbuffer_get_length(s->out));
    reset_stream(s, NGHTTP2_INTERNAL_ERROR);
}

static size_t
op_pending(void *fe)
{
    struct h2_stream *s = fe;
    size_t n;

    if (s->h->dead) {
        return 0;
    }
    n = stream_pending(s);
    if (n >= REQ_CLIENT_HIGH_WATERMARK && !s->blocked && s->req != NULL) {
        s->blocked = 1; /* the req stops pulling from the store: owe it a writable call */
        TAILQ_INSERT_TAIL(&s->h->blocked, s, blocked_link);
    }
    return n;
}

static const struct req_fe_ops stream_ops = {
    .send_continue = op_send_continue,
    .consumed = op_consumed,
    .pause_body = op_pause_body,
    .resume_body = op_resume_body,
    .send_head = op_send_head,
    .send_body = op_send_body,
    .send_end = op_send_end,
    .abort = op_abort,
    .pending = op_pending,
};

/* ---- request start ----------------------------------------------------------------------- */

/* Index of the first field named NAME (exact: HTTP/2 names arrive lowercase), or -1. */
static long
head_find(const struct h2_head *hd, const char *name)
{
    size_t i;

    for (i = 0; i < hd->nfields; i++) {
        if (slice_eq(field_name(hd, i), slice_cstr(name))) {
            return (long)i;
        }
    }
    return -1;
}

/* END_HEADERS of a request: checks what nghttp2 leaves to us, then starts a req. */
static void
start_request(struct h2_stream *s, int end_stream)
{
    struct h2_head *hd = &s->head;
    struct req_start_args a;
    long method, path, authority, host, cl;
    uint64_t n = 0;
    size_t i, k;

    method = head_find(hd, ":method");
    path = head_find(hd, ":path");
    authority = head_find(hd, ":authority");
    host = head_find(hd, "host");
    cl = head_find(hd, "content-length");
    s->is_head = method >= 0 && slice_eq(field_value(hd, (size_t)method), SLICE_LIT("HEAD"));
    if (hd->over_limit) {
        respond_error(s, S3ERR_HEADERS_TOO_LARGE,
                      "Your request header section exceeds the maximum allowed size or count.");
        return;
    }
    /* RFC 9113 8.3.1: a Host naming another entity than :authority is malformed; SigV4
     * signs host, routing reads the authority, so they must not disagree. */
    if (authority >= 0 && host >= 0 &&
        !slice_eq_nocase(field_value(hd, (size_t)authority), field_value(hd, (size_t)host))) {
        respond_error(s, S3ERR_INVALID_REQUEST, "Host and :authority disagree.");
        return;
    }
    if (cl >= 0 && (slice_to_u64(field_value(hd, (size_t)cl), &n) != 0 || n > INT64_MAX)) {
        respond_error(s, S3ERR_INVALID_REQUEST, "Content-Length is not a number.");
        return;
    }
    if (authority >= 0 && host < 0) {
        /* SigV4 signs "host"; HTTP/2 clients send :authority instead */
        head_reserve(hd, 4 + 1 + hd->fields[authority].value_len + 1);
        head_add(hd, "host", 4, hd->buf + hd->fields[authority].value_off,
                 hd->fields[authority].value_len);
        host = (long)hd->nfields - 1;
    }
    s->hdrs = xmalloc((hd->nfields ? hd->nfields : 1) * sizeof(*s->hdrs));
    for (i = 0, k = 0; i < hd->nfields; i++) {
        if (hd->fields[i].name_len > 0 && hd->buf[hd->fields[i].name_off] == ':') {
            continue;
        }
        s->hdrs[k].name = field_name(hd, i);
        s->hdrs[k].value = field_value(hd, i);
        k++;
    }
    memset(&a, 0, sizeof(a));
    a.method = method >= 0 ? field_value(hd, (size_t)method) : SLICE_NULL;
    a.target = path >= 0 ? field_value(hd, (size_t)path) : SLICE_LIT("");
    a.authority = SLICE_LIT("");
    if (authority >= 0) {
        a.authority = field_value(hd, (size_t)authority);
    } else if (host >= 0) {
        a.authority = field_value(hd, (size_t)host);
    }
    a.hdrs = s->hdrs;
    a.nhdrs = k;
    a.content_length = cl >= 0 ? (int64_t)n : -1;
    s->content_length = a.content_length;
    a.has_body = !end_stream;
    a.expect_continue = 0;
    a.proto = "HTTP/2";
    a.client_addr = s->h->c->peer;
    s->req = req_create(s->h->c->w, &stream_ops, s);
    req_start(s->req, &a); /* may answer (and release us) before it returns */
    if (s->req != NULL && a.has_body) {
        body_timer_arm(s);
    }
}

/* The client finished its request body (DATA or trailers with END_STREAM). */
static void
body_end(struct h2_stream *s)
{
    body_timer_stop(s);
    if (s->req != NULL) {
        req_body_end(s->req);
    }
}

/* ---- nghttp2 callbacks (never tear down from here: return an error instead) -------------- */

static int
cb_begin_headers(nghttp2_session *ngh, const nghttp2_frame *frame, void *arg)
{
    struct h2_conn *h = arg;
    struct h2_stream *s;
    int64_t ms = h->c->w->cf->client_header_timeout_ms;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    s = stream_new(h, frame->hd.stream_id);
    if (nghttp2_session_set_stream_user_data(ngh, s->id, s) != 0) {
        stream_free(s);
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    /* CONTINUATION frames cannot interleave, so one timer covers the open header block */
    h->head_stream = s->id;
    if (ms > 0) {
        struct timeval tv = ms_to_tv(ms);

        evtimer_add(h->header_timer, &tv);
    }
    return 0;
}

static int
cb_header(nghttp2_session *ngh, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
          const uint8_t *value, size_t valuelen, uint8_t flags, void *arg)
{
    struct h2_conn *h = arg;
    const struct proxy_conf *cf = h->c->w->cf;
    struct h2_stream *s;
    struct h2_head *hd;
    size_t size = namelen + valuelen + 32;
    int pseudo = namelen > 0 && name[0] == ':';

    (void)flags;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0; /* trailers: dropped (S3 puts its trailers inside aws-chunked bodies) */
    }
    s = nghttp2_session_get_stream_user_data(ngh, frame->hd.stream_id);
    if (s == NULL || s->head.over_limit) {
        return 0;
    }
    hd = &s->head;
    /* over a limit: keep decoding (HPACK state is shared) but store nothing more; the
     * request is answered with 400 RequestHeaderSectionTooLarge at END_HEADERS, as h1 does */
    if (hd->list_size + size > head_limit(cf) ||
        (!pseudo && cf->max_header_count > 0 && hd->nregular >= (size_t)cf->max_header_count)) {
        hd->over_limit = 1;
        return 0;
    }
    hd->list_size += size;
    hd->nregular += !pseudo;
    head_add(hd, name, namelen, value, valuelen);
    return 0;
}

static int
cb_frame_recv(nghttp2_session *ngh, const nghttp2_frame *frame, void *arg)
{
    struct h2_conn *h = arg;
    struct h2_stream *s = stream_get(h, frame->hd.stream_id);
    int end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    (void)ngh;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (s == NULL) {
            break;
        }
        if (end_stream) {
            s->remote_ended = 1;
        }
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            s->head_done = 1;
            evtimer_del(h->header_timer);
            start_request(s, end_stream);
        } else if (end_stream) {
            body_end(s);
        }
        break;
    case NGHTTP2_DATA:
        if (s != NULL && end_stream) {
            s->remote_ended = 1;
            body_end(s);
        }
        break;
    case NGHTTP2_RST_STREAM:
        count_reset(h, "RST_STREAM received");
        break;
    default:
        break;
    }
    return 0;
}

/* client_body_min_rate for one stream, as h1 measures it: over each client_body_timeout,
 * DATA must average the rate. A window that our flow control shut restarts the measure
 * (the client could not send), so only a client that trickles by choice is caught.
 * Returns 0 when S is too slow. */
static int
body_rate_ok(struct h2_stream *s, size_t n)
{
    const struct proxy_conf *cf = s->h->c->w->cf;
    int64_t now = worker_now_ms(s->h->c->w), elapsed;

    if (cf->client_body_min_rate <= 0 || cf->client_body_timeout_ms <= 0) {
        return 1;
    }
    if (s->rate_start_ms == 0) {
        s->rate_start_ms = now;
        s->rate_bytes = 0;
    }
    s->rate_bytes += (int64_t)n;
    elapsed = now - s->rate_start_ms;
    if (!client_can_send(s)) {
        s->rate_start_ms = 0; /* our window is shut: the clock restarts once it opens */
        return 1;
    }
    if (elapsed < cf->client_body_timeout_ms) {
        return 1;
    }
    if (s->rate_bytes * 1000 < cf->client_body_min_rate * elapsed) {
        return 0;
    }
    s->rate_start_ms = now;
    s->rate_bytes = 0;
    return 1;
}

/* The body of S came in below client_body_min_rate: the req learns the client is gone and
 * the client gets 400 RequestTimeout (RST_STREAM if its response had started). */
static void
body_too_slow(struct h2_stream *s)
{
    struct req *r = s->req;

    log_info("h2", "%s: stream %d sent its request body below client_body_min_rate (%lld "
                   "bytes in %lld ms)",
             s->h->c->peer, s->id, (long long)s->rate_bytes,
             (long long)(worker_now_ms(s->h->c->w) - s->rate_start_ms));
    release_req(s);
    req_client_gone(r);
    if (s->head_sent) {
        reset_stream(s, NGHTTP2_CANCEL);
        return;
    }
    respond_error(s, S3ERR_REQUEST_TIMEOUT,
                  "Your request body arrived slower than the server accepts "
                  "(client_body_min_rate).");
}

static int
cb_data_chunk(nghttp2_session *ngh, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
              void *arg)
{
    struct h2_conn *h = arg;
    struct h2_stream *s = stream_get(h, id);

    (void)flags;
    if (s != NULL) {
        s->received += (int64_t)len;
    }
    if (s == NULL || s->req == NULL) {
        /* nobody will report these consumed: credit them now so the connection window
         * does not shrink for good */
        if (nghttp2_is_fatal(nghttp2_session_consume(ngh, id, len))) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        return 0;
    }
    s->unconsumed += len;
    body_timer_arm(s);
    req_body(s->req, (const char *)data, len);
    if (s->req != NULL && !s->remote_ended && !body_rate_ok(s, len)) {
        body_too_slow(s);
    }
    return 0;
}

/* Our END_STREAM went out while the client is still sending its body. RFC 9113 8.1 lets us
 * stop the upload with RST_STREAM(NO_ERROR); a short rest is drained instead (see
 * H2_DISCARD_LIMIT) within one client_body_timeout. DATA is credited on arrival. */
static void
response_done_early(struct h2_stream *s)
{
    if (s->content_length < 0 || s->content_length - s->received > H2_DISCARD_LIMIT) {
        reset_stream(s, NGHTTP2_NO_ERROR);
        return;
    }
    body_timer_arm(s);
}

static int
cb_frame_send(nghttp2_session *ngh, const nghttp2_frame *frame, void *arg)
{
    struct h2_conn *h = arg;
    struct h2_stream *s = stream_get(h, frame->hd.stream_id);

    (void)ngh;
    switch (frame->hd.type) {
    case NGHTTP2_RST_STREAM:
        if (s == NULL || !s->reset_by_us) {
            count_reset(h, "RST_STREAM provoked"); /* nghttp2 reset a stream the client broke */
        }
        break;
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS:
        if (s != NULL && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !s->remote_ended &&
            !s->reset_by_us) {
            response_done_early(s);
        }
        break;
    default:
        break;
    }
    return 0;
}

static int
cb_stream_close(nghttp2_session *ngh, int32_t id, uint32_t error_code, void *arg)
{
    struct h2_conn *h = arg;
    struct h2_stream *s = stream_get(h, id);

    if (s == NULL) {
        return 0;
    }
    if (s->req != NULL) {
        struct req *r = s->req;

        s->req = NULL;
        log_debug("h2", "%s: stream %d closed (%s) before its response ended", h->c->peer, id,
                  nghttp2_http2_strerror(error_code));
        req_client_gone(r);
    }
    /* bytes the req held uncredited: the stream window is gone, the connection's is not */
    if (s->unconsumed > 0 &&
        nghttp2_is_fatal(nghttp2_session_consume_connection(ngh, s->unconsumed))) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    stream_free(s);
    return 0;
}

static int
cb_error(nghttp2_session *ngh, int code, const char *msg, size_t len, void *arg)
{
    struct h2_conn *h = arg;

    (void)ngh;
    (void)code;
    log_debug("h2", "%s: %.*s", h->c->peer, (int)len, msg);
    return 0;
}

static int
session_create(struct h2_conn *h)
{
    const struct proxy_conf *cf = h->c->w->cf;
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    int rv;

    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        return PX_ENOMEM;
    }
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        return PX_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, cb_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, cb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cb_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cb_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, cb_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb_stream_close);
    nghttp2_session_callbacks_set_error_callback2(cbs, cb_error);
    /* window updates only through nghttp2_session_consume(): store back-pressure */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* a client that sends SETTINGS or PING without reading the ACKs: nghttp2 refuses more
     * input (NGHTTP2_ERR_FLOODED) once this many wait; honest clients have a handful */
    nghttp2_option_set_max_outbound_ack(
        opt, cf->h2_max_pending_acks > 0 ? (size_t)cf->h2_max_pending_acks : 100);
    /* a header block split into endless CONTINUATIONs (CVE-2024-27316 and kin) */
    nghttp2_option_set_max_continuations(opt, (size_t)cf->h2_max_continuations);
    /* no priority tree of closed streams to keep (memory a client could inflate) */
    nghttp2_option_set_no_closed_streams(opt, 1);
    rv = nghttp2_session_server_new2(&h->ngh, cbs, h, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    return rv == 0 ? PX_OK : PX_ENOMEM;
}

/* Our SETTINGS and the connection window; sent with the first pump. */
static int
submit_settings(struct h2_conn *h, const struct proxy_conf *cf)
{
    int64_t win = cf->max_inflight_body > 0 ? cf->max_inflight_body : 1024 * 1024;
    int64_t conn_win;
    nghttp2_settings_entry iv[4];

    /* a stream may hold at most what one req buffers towards the store: h2 has no other
     * brake on the client (pause_body is a no-op), so the window is the bound */
    if (win < NGHTTP2_INITIAL_WINDOW_SIZE) {
        win = NGHTTP2_INITIAL_WINDOW_SIZE;
    }
    if (win > NGHTTP2_MAX_WINDOW_SIZE) {
        win = NGHTTP2_MAX_WINDOW_SIZE;
    }
    conn_win = win * H2_CONN_WINDOW_STREAMS;
    if (conn_win > NGHTTP2_MAX_WINDOW_SIZE) {
        conn_win = NGHTTP2_MAX_WINDOW_SIZE;
    }
    iv[0] = (nghttp2_settings_entry){
        NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
        (uint32_t)(cf->h2_max_concurrent_streams > 0 ? cf->h2_max_concurrent_streams : 100)};
    iv[1] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)win};
    iv[2] =
        (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)head_limit(cf)};
    /* RFC 9218: drop the RFC 7540 priority tree, a known source of CPU and memory abuse */
    iv[3] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1};
    if (nghttp2_submit_settings(h->ngh, NGHTTP2_FLAG_NONE, iv, 4) != 0 ||
        nghttp2_session_set_local_window_size(h->ngh, NGHTTP2_FLAG_NONE, 0, (int32_t)conn_win) !=
            0) {
        return PX_ENOMEM;
    }
    return PX_OK;
}

/* ---- connection I/O ---------------------------------------------------------------------- */

/* Drops the session and every stream (live reqs learn the client is gone); leaves the
 * bufferevent and the conn alone. Safe to call twice. */
static void
release_state(struct h2_conn *h)
{
    struct h2_stream *s;

    if (h->dead) {
        return;
    }
    h->dead = 1;
    if (h->ngh != NULL) {
        nghttp2_session_del(h->ngh); /* calls no callbacks */
        h->ngh = NULL;
    }
    while ((s = TAILQ_FIRST(&h->streams)) != NULL) {
        if (s->req != NULL) {
            struct req *r = s->req;

            s->req = NULL;
            req_client_gone(r);
        }
        stream_free(s);
    }
    event_del(h->pump_ev);
    evtimer_del(h->idle_timer);
    evtimer_del(h->header_timer);
    evtimer_del(h->drain_timer);
}

/* Only from top-level event callbacks: nothing of ours may be up the stack. */
static void
teardown(struct h2_conn *h, const char *why)
{
    if (h->dead) {
        return;
    }
    if (why != NULL) {
        log_debug("h2", "%s: closing with %zu open streams: %s", h->c->peer, h->nstreams, why);
    }
    release_state(h);
    conn_close(h->c);
}

/* nghttp2_session_mem_recv() failed with RV. A flood (h2_max_pending_acks,
 * h2_max_continuations) is answered with GOAWAY(ENHANCE_YOUR_CALM) after the frames already
 * queued, and nothing more is read: the session closes once that is written, or after
 * client_send_timeout if the flooder does not read. Anything else closes at once. */
static int
input_refused(struct h2_conn *h, int rv)
{
    struct evbuffer *in = bufferevent_get_input(h->c->bev);

    if (rv != NGHTTP2_ERR_FLOODED && rv != NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
        log_info("h2", "%s: %s", h->c->peer, nghttp2_strerror(rv));
        return PX_EINVAL;
    }
    log_warn("h2", "%s: %s (%s); GOAWAY ENHANCE_YOUR_CALM", h->c->peer, nghttp2_strerror(rv),
             rv == NGHTTP2_ERR_FLOODED ? "h2_max_pending_acks" : "h2_max_continuations");
    h->calmed = 1;
    h->refused = 1;
    bufferevent_disable(h->c->bev, EV_READ);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (nghttp2_session_terminate_session(h->ngh, NGHTTP2_ENHANCE_YOUR_CALM) != 0) {
        return PX_EINVAL;
    }
    return PX_OK;
}

/* Feeds everything in the input buffer to nghttp2, without linearising it. */
static int
process_input(struct h2_conn *h)
{
    struct evbuffer *in = bufferevent_get_input(h->c->bev);
    struct evbuffer_iovec vec[H2_NVEC];

    while (!h->refused && evbuffer_get_length(in) > 0) {
        size_t used = 0;
        int n = evbuffer_peek(in, -1, NULL, vec, H2_NVEC), i;

        for (i = 0; i < n && i < H2_NVEC; i++) {
            ssize_t rv = nghttp2_session_mem_recv(h->ngh, vec[i].iov_base, vec[i].iov_len);

            if (rv < 0) {
                evbuffer_drain(in, used);
                return input_refused(h, (int)rv);
            }
            used += (size_t)rv;
        }
        evbuffer_drain(in, used);
        if (used == 0) {
            break;
        }
    }
    return PX_OK;
}

/* Moves frames from nghttp2 to the socket buffer until it holds H2_OUT_HIGH. */
static int
flush(struct h2_conn *h)
{
    struct evbuffer *out = bufferevent_get_output(h->c->bev);

    while (!h->fatal && evbuffer_get_length(out) < H2_OUT_HIGH) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->ngh, &data);

        if (n < 0) {
            log_warn("h2", "%s: %s", h->c->peer, nghttp2_strerror((int)n));
            return PX_EIO;
        }
        if (n == 0) {
            break;
        }
        evbuffer_add(out, data, (size_t)n);
    }
    return h->fatal ? PX_EIO : PX_OK;
}

/* req_client_writable() for blocked streams whose queue has drained. */
static void
notify_writable(struct h2_conn *h)
{
    struct h2_stream *s, *next;

    for (s = TAILQ_FIRST(&h->blocked); s != NULL; s = next) {
        next = TAILQ_NEXT(s, blocked_link);
        if (stream_pending(s) >= H2_STREAM_LOW) {
            continue;
        }
        unblock(s);
        if (s->req != NULL) {
            req_client_writable(s->req); /* may queue data and block s again (at the tail) */
        }
    }
}

/* nghttp2 wants neither to read nor to write (GOAWAY exchanged and no streams left, or a
 * fatal protocol error): flush what is queued, then close. */
static void
maybe_close(struct h2_conn *h)
{
    struct evbuffer *out = bufferevent_get_output(h->c->bev);

    if (nghttp2_session_want_read(h->ngh) || nghttp2_session_want_write(h->ngh)) {
        return;
    }
    if (evbuffer_get_length(out) == 0) {
        teardown(h, "session finished");
    } else if (!h->close_when_flushed) {
        h->close_when_flushed = 1;
        bufferevent_setwatermark(h->c->bev, EV_WRITE, 0, 0); /* write cb when empty */
        bufferevent_enable(h->c->bev, EV_WRITE);                /* even on a plain conn */
    }
}

static void
pump(struct h2_conn *h)
{
    if (h->dead) {
        return;
    }
    for (;;) {
        struct evbuffer *out = bufferevent_get_output(h->c->bev);
        int full;

        if (flush(h) != 0) {
            teardown(h, "nghttp2 send failed");
            return;
        }
        full = evbuffer_get_length(out) >= H2_OUT_HIGH; /* flush stopped at the mark */
        if (!conn_push(h->c) || !full) {
            break; /* stuck (EV_WRITE is on and on_write pumps again), or nothing left */
        }
    }
    notify_writable(h);
    maybe_close(h);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
    struct h2_conn *h = arg;

    (void)bev;
    if (h->dead) {
        return;
    }
    if (process_input(h) != 0) {
        teardown(h, "protocol error");
        return;
    }
    pump(h);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
    struct h2_conn *h = arg;

    if (h->dead) {
        return;
    }
    conn_write_idle(h->c);
    if (h->close_when_flushed) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
            teardown(h, NULL);
        }
        return;
    }
    pump(h);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
    struct h2_conn *h = arg;

    (void)bev;
    if (what & BEV_EVENT_TIMEOUT) {
        log_info("h2", "%s: client did not read for client_send_timeout; closing", h->c->peer);
    }
    teardown(h, (what & BEV_EVENT_EOF) ? "client closed" : "socket error or timeout");
}

static void
on_pump(evutil_socket_t fd, short what, void *arg)
{
    struct h2_conn *h = arg;

    (void)fd;
    (void)what;
    if (h->dead) {
        return;
    }
    /* bytes read before we took over (the client preface) are parsed here */
    if (evbuffer_get_length(bufferevent_get_input(h->c->bev)) > 0 && process_input(h) != 0) {
        teardown(h, "protocol error");
        return;
    }
    pump(h);
}

static void
on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct h2_conn *h = arg;

    (void)fd;
    (void)what;
    if (h->dead || h->nstreams > 0) {
        return;
    }
    log_debug("h2", "%s: idle for client_idle_timeout; GOAWAY", h->c->peer);
    nghttp2_session_terminate_session(h->ngh, NGHTTP2_NO_ERROR);
    pump(h);
}

static void
on_header_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct h2_conn *h = arg;
    struct h2_stream *s;

    (void)fd;
    (void)what;
    if (h->dead) {
        return;
    }
    s = stream_get(h, h->head_stream);
    if (s == NULL || s->head_done) {
        return; /* the block ended another way (stream reset, refused) */
    }
    log_info("h2", "%s: stream %d header block unfinished after client_header_timeout; GOAWAY",
             h->c->peer, s->id);
    nghttp2_session_terminate_session(h->ngh, NGHTTP2_ENHANCE_YOUR_CALM);
    pump(h);
}

static void
on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    struct h2_conn *h = arg;
    int rv;

    (void)fd;
    (void)what;
    if (h->dead) {
        return;
    }
    /* the real GOAWAY: streams up to the last one we processed finish, later ones are
     * ignored (the client retries them elsewhere); we close once none remain */
    rv = nghttp2_submit_goaway(h->ngh, NGHTTP2_FLAG_NONE,
                               nghttp2_session_get_last_proc_stream_id(h->ngh), NGHTTP2_NO_ERROR,
                               NULL, 0);
    if (nghttp2_is_fatal(rv)) {
        teardown(h, "GOAWAY failed");
        return;
    }
    pump(h);
}

/* ---- module API -------------------------------------------------------------------------- */

int
h2_conn_start(struct conn *c)
{
    const struct proxy_conf *cf = c->w->cf;
    struct h2_conn *h = xcalloc(1, sizeof(*h));
    struct timeval tv;

    h->c = c;
    TAILQ_INIT(&h->streams);
    TAILQ_INIT(&h->blocked);
    if (session_create(h) != 0) {
        free(h);
        return PX_ENOMEM;
    }
    if (submit_settings(h, cf) != 0) {
        nghttp2_session_del(h->ngh);
        free(h);
        return PX_ENOMEM;
    }
    h->pump_ev = event_new(c->w->evb, -1, 0, on_pump, h);
    h->idle_timer = evtimer_new(c->w->evb, on_idle, h);
    h->header_timer = evtimer_new(c->w->evb, on_header_timeout, h);
    h->drain_timer = evtimer_new(c->w->evb, on_drain_timer, h);
    c->h2 = h;
    c->proto = CONN_H2;
    bufferevent_setcb(c->bev, on_read, on_write, on_event, h);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_setwatermark(c->bev, EV_WRITE, H2_OUT_LOW, 0);
    /* the write timeout only runs while output is waiting: a stalled reader, not an idle
     * client; idleness is idle_timer's job */
    tv = ms_to_tv(cf->client_send_timeout_ms);
    bufferevent_set_timeouts(c->bev, NULL, cf->client_send_timeout_ms > 0 ? &tv : NULL);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    conn_direct_writes(c); /* pump writes through conn_push on plain connections */
    arm_idle(h);
    if (c->w->draining) {
        h2_conn_drain(c);
    }
    pump_later(h); /* our SETTINGS, and the preface already in the input buffer */
    return PX_OK;
}

void
h2_conn_drain(struct conn *c)
{
    struct h2_conn *h = c->h2;
    struct timeval tv = ms_to_tv(H2_DRAIN_GRACE_MS);

    if (h == NULL || h->dead || h->draining) {
        return;
    }
    h->draining = 1;
    /* GOAWAY(2^31-1) first: the client stops opening streams without losing any in flight */
    if (nghttp2_is_fatal(nghttp2_submit_shutdown_notice(h->ngh))) {
        h->fatal = 1;
    }
    evtimer_add(h->drain_timer, &tv);
    pump_later(h);
}

void
h2_conn_free(struct h2_conn *h)
{
    if (h == NULL) {
        return;
    }
    release_state(h); /* no-op after teardown; otherwise the reqs still learn we are gone */
    event_free(h->pump_ev);
    event_free(h->idle_timer);
    event_free(h->header_timer);
    event_free(h->drain_timer);
    free(h);
}
