/*
 * Unit tests for proxy/h2.c: a real nghttp2 client talks to the front end over a bufferevent
 * pair; the req is a scripted fake (struct req is opaque to h2.c, so the test defines it).
 * Checks the contract of proxy/req.h from the front end's side: each req hears
 * req_client_gone() at most once and never after it let go, windows follow consumed(),
 * responses obey pending()/req_client_writable(), and the abuse limits fire.
 */
#include "proxy/h2.c"
#include "proxy/s3err.c"

#include <sys/time.h>

#include "test.h"

/* ---- fake req ------------------------------------------------------------------------------ */

enum fake_mode { FAKE_HOLD = 0, FAKE_HELLO, FAKE_ECHO, FAKE_BIG, FAKE_HEAD, FAKE_EARLY };

struct req {
    const struct req_fe_ops *ops; /* the front end's ops (borrowed) */
    void *fe;                     /* the stream; NULL once either side let go */
    enum fake_mode mode;          /* behaviour, from the path */
    char method[16];              /* copied from req_start */
    char path[256];               /* copied from req_start */
    char authority[256];          /* copied from req_start */
    char host[256];               /* "host" header as passed, "" if none */
    size_t nhdrs;                 /* headers passed */
    int64_t content_length;       /* as passed */
    int has_body;                 /* as passed */
    size_t body_len;              /* bytes seen through req_body() */
    size_t uncredited;            /* bytes not yet given back with consumed() */
    struct evbuffer *body;        /* request body copy */
    int body_ended;               /* req_body_end() calls */
    int gone;                     /* req_client_gone() calls */
    int calls_after_release;      /* front end called us after we let go: contract breach */
    int writable;                 /* req_client_writable() calls */
    size_t produced;              /* FAKE_BIG: response bytes sent so far */
    size_t max_pending;           /* FAKE_BIG: largest pending() seen */
    int finished;                 /* send_end or abort called */
};

#define MAX_FAKES 1024
static struct req *fakes[MAX_FAKES];
static int nfakes;
#define BIG_TOTAL (4 * 1024 * 1024 + 123)
#define BIG_CHUNK (64 * 1024)

struct req *
req_create(struct worker *w, const struct req_fe_ops *ops, void *fe)
{
    struct req *r = xcalloc(1, sizeof(*r));

    (void)w;
    r->ops = ops;
    r->fe = fe;
    r->body = evbuffer_new();
    if (nfakes < MAX_FAKES) {
        fakes[nfakes++] = r;
    }
    return r;
}

static void
fake_release(struct req *r, int ok)
{
    void *fe = r->fe;

    r->fe = NULL;
    r->finished = 1;
    if (ok) {
        r->ops->send_end(fe);
    } else {
        r->ops->abort(fe);
    }
}

static void
fake_respond(struct req *r, int status, const char *body, size_t len)
{
    struct http_header h[3] = {
        {SLICE_LIT("X-Test"), SLICE_LIT("yes")},
        {SLICE_LIT("Connection"), SLICE_LIT("close")},
        {SLICE_LIT("Content-Length"), SLICE_LIT("999")},
    };
    struct evbuffer *b = evbuffer_new();

    r->ops->send_head(r->fe, status, h, 3, (int64_t)len);
    evbuffer_add(b, body, len);
    r->ops->send_body(r->fe, b);
    ok(evbuffer_get_length(b) == 0 || r->fe == NULL, "send_body drains its argument");
    evbuffer_free(b);
    fake_release(r, 1);
}

/* Sends BIG_TOTAL bytes of a pattern, stopping whenever pending() says the client is full. */
static void
fake_produce(struct req *r)
{
    static char chunk[BIG_CHUNK];
    struct evbuffer *b = evbuffer_new();

    while (r->fe != NULL && r->produced < BIG_TOTAL) {
        size_t p = r->ops->pending(r->fe), n = BIG_TOTAL - r->produced, i;

        if (p > r->max_pending) {
            r->max_pending = p;
        }
        if (p >= REQ_CLIENT_HIGH_WATERMARK) {
            break; /* wait for req_client_writable() */
        }
        if (n > BIG_CHUNK) {
            n = BIG_CHUNK;
        }
        for (i = 0; i < n; i++) {
            chunk[i] = (char)('a' + (r->produced + i) % 26);
        }
        evbuffer_add(b, chunk, n);
        r->ops->send_body(r->fe, b);
        r->produced += n;
    }
    if (r->fe != NULL && r->produced == BIG_TOTAL) {
        fake_release(r, 1);
    }
    evbuffer_free(b);
}

static void
copy_slice(char *dst, size_t cap, struct slice s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;

    memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

void
req_start(struct req *r, const struct req_start_args *a)
{
    size_t i;

    copy_slice(r->method, sizeof(r->method), a->method);
    copy_slice(r->path, sizeof(r->path), a->target);
    copy_slice(r->authority, sizeof(r->authority), a->authority);
    ok(a->target.ptr[a->target.len] == '\0', "target is NUL-terminated (req.c uses strcspn)");
    for (i = 0; i < a->nhdrs; i++) {
        ok(a->hdrs[i].name.ptr[0] != ':', "no pseudo-header among hdrs");
        if (slice_eq_nocase(a->hdrs[i].name, SLICE_LIT("host"))) {
            copy_slice(r->host, sizeof(r->host), a->hdrs[i].value);
        }
    }
    r->nhdrs = a->nhdrs;
    r->content_length = a->content_length;
    r->has_body = a->has_body;
    ok(strcmp(a->proto, "HTTP/2") == 0 && a->expect_continue == 0, "proto and expect");
    if (strcmp(r->path, "/hello") == 0) {
        r->mode = FAKE_HELLO;
        fake_respond(r, 200, "hello", 5);
    } else if (strcmp(r->path, "/echo") == 0) {
        r->mode = FAKE_ECHO;
    } else if (strcmp(r->path, "/big") == 0) {
        r->mode = FAKE_BIG;
        r->ops->send_head(r->fe, 200, NULL, 0, BIG_TOTAL);
        fake_produce(r);
    } else if (strcmp(r->path, "/head") == 0) {
        r->mode = FAKE_HEAD;
        r->ops->send_head(r->fe, 200, NULL, 0, 1234);
        fake_release(r, 1);
    } else if (strcmp(r->path, "/early") == 0) {
        r->mode = FAKE_EARLY;
        fake_respond(r, 403, "<Error/>", 8);
    } else {
        r->mode = FAKE_HOLD;
    }
}

void
req_body(struct req *r, const char *data, size_t len)
{
    if (r->fe == NULL) {
        r->calls_after_release++;
        return;
    }
    evbuffer_add(r->body, data, len);
    r->body_len += len;
    if (r->mode == FAKE_ECHO) {
        r->ops->consumed(r->fe, len);
    } else {
        r->uncredited += len;
    }
}

void
req_body_end(struct req *r)
{
    if (r->fe == NULL) {
        r->calls_after_release++;
        return;
    }
    r->body_ended++;
    if (r->mode == FAKE_ECHO) {
        size_t n = evbuffer_get_length(r->body);
        char *copy = xmalloc(n + 1);

        evbuffer_copyout(r->body, copy, n);
        fake_respond(r, 200, copy, n);
        free(copy);
    }
}

void
req_client_writable(struct req *r)
{
    if (r->fe == NULL) {
        r->calls_after_release++;
        return;
    }
    r->writable++;
    if (r->mode == FAKE_BIG) {
        fake_produce(r);
    }
}

void
req_client_gone(struct req *r)
{
    if (r->fe == NULL) {
        r->calls_after_release++;
    }
    r->gone++;
    r->fe = NULL;
}

static void
fakes_reset(void)
{
    int i;

    for (i = 0; i < nfakes; i++) {
        evbuffer_free(fakes[i]->body);
        free(fakes[i]);
    }
    nfakes = 0;
}

/* Every req either let go itself or was told the client left; never both, never twice. */
static void
check_contract(const char *what)
{
    int i, bad = 0;

    for (i = 0; i < nfakes; i++) {
        struct req *r = fakes[i];

        if (r->calls_after_release || r->gone > 1 || (r->gone && r->finished) ||
            (!r->gone && !r->finished) || r->fe != NULL) {
            bad++;
            printf("# req %d (%s): gone=%d finished=%d after=%d\n", i, r->path, r->gone,
                   r->finished, r->calls_after_release);
        }
    }
    ok(bad == 0, "%s: req contract kept by all %d reqs", what, nfakes);
}

/* ---- fake conn / worker ------------------------------------------------------------------- */

static int closed;
static int reqid;

void
conn_close(struct conn *c)
{
    c->closing = 1;
    closed++;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
}

/* The fake connection is a bufferevent pair, with no socket to write to directly: it keeps
 * the bufferevent's own writes, as a TLS connection does. */
int
conn_push(struct conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
}

void
conn_write_idle(struct conn *c)
{
    (void)c;
}

void
conn_direct_writes(struct conn *c)
{
    (void)c;
}

void
worker_request_id(struct worker *w, char out[24])
{
    (void)w;
    snprintf(out, 24, "TESTID%08d", reqid++);
}

/* ---- client ------------------------------------------------------------------------------- */

struct cstream {
    int32_t id;              /* stream id */
    int status;              /* :status, 0 until received */
    char hdrs[2048];         /* "name: value\n" lines of the response */
    struct evbuffer *body;   /* response body */
    struct evbuffer *upload; /* request body still to send */
    int end_upload;          /* END_STREAM once upload drains */
    int closed;              /* stream closed */
    uint32_t close_code;     /* its error code */
};

struct client {
    struct event_base *evb;      /* shared with the server side */
    struct bufferevent *pair[2]; /* [0] server side (conn), [1] client side */
    nghttp2_session *ngh;        /* client session */
    struct conn c;               /* fake connection given to h2_conn_start */
    struct worker w;             /* fake worker */
    struct proxy_conf cf;        /* its config */
    int goaways;                 /* GOAWAY frames received */
    int32_t goaway_last;         /* last-stream-id of the newest */
    uint32_t goaway_code;        /* error code of the newest */
    int eof;                     /* the server side went away */
};

static ssize_t
c_send(nghttp2_session *ngh, const uint8_t *data, size_t len, int flags, void *arg)
{
    struct client *cl = arg;

    (void)ngh;
    (void)flags;
    if (cl->pair[1] == NULL) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    evbuffer_add(bufferevent_get_output(cl->pair[1]), data, len);
    return (ssize_t)len;
}

static int
c_header(nghttp2_session *ngh, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
         const uint8_t *value, size_t valuelen, uint8_t flags, void *arg)
{
    struct cstream *cs = nghttp2_session_get_stream_user_data(ngh, frame->hd.stream_id);
    size_t used;

    (void)flags;
    (void)arg;
    if (cs == NULL) {
        return 0;
    }
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        cs->status = atoi((const char *)value);
        return 0;
    }
    used = strlen(cs->hdrs);
    snprintf(cs->hdrs + used, sizeof(cs->hdrs) - used, "%.*s: %.*s\n", (int)namelen, name,
             (int)valuelen, value);
    return 0;
}

static int
c_data(nghttp2_session *ngh, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *arg)
{
    struct cstream *cs = nghttp2_session_get_stream_user_data(ngh, id);

    (void)flags;
    (void)arg;
    if (cs != NULL) {
        evbuffer_add(cs->body, data, len);
    }
    return 0;
}

static int
c_frame_recv(nghttp2_session *ngh, const nghttp2_frame *frame, void *arg)
{
    struct client *cl = arg;

    (void)ngh;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        cl->goaways++;
        cl->goaway_last = frame->goaway.last_stream_id;
        cl->goaway_code = frame->goaway.error_code;
    }
    return 0;
}

static int
c_close(nghttp2_session *ngh, int32_t id, uint32_t code, void *arg)
{
    struct cstream *cs = nghttp2_session_get_stream_user_data(ngh, id);

    (void)arg;
    if (cs != NULL) {
        cs->closed = 1;
        cs->close_code = code;
    }
    return 0;
}

static ssize_t
c_upload(nghttp2_session *ngh, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
         nghttp2_data_source *src, void *arg)
{
    struct cstream *cs = src->ptr;
    int n;

    (void)ngh;
    (void)id;
    (void)arg;
    if (evbuffer_get_length(cs->upload) == 0 && !cs->end_upload) {
        return NGHTTP2_ERR_DEFERRED;
    }
    n = evbuffer_remove(cs->upload, buf, length);
    if (evbuffer_get_length(cs->upload) == 0 && cs->end_upload) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return n < 0 ? 0 : n;
}

static void
c_flush(struct client *cl)
{
    if (cl->ngh != NULL && cl->pair[1] != NULL) {
        nghttp2_session_send(cl->ngh);
    }
}

static void
c_read(struct bufferevent *bev, void *arg)
{
    struct client *cl = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n); /* test code: small frames */

    if (nghttp2_session_mem_recv(cl->ngh, p, n) < 0) {
        cl->eof = 1;
    }
    evbuffer_drain(in, n);
    c_flush(cl);
}

static void
c_event(struct bufferevent *bev, short what, void *arg)
{
    struct client *cl = arg;

    (void)bev;
    (void)what;
    cl->eof = 1;
}

static void
default_conf(struct proxy_conf *cf)
{
    memset(cf, 0, sizeof(*cf));
    cf->max_header_bytes = 32 * 1024;
    cf->max_header_count = 100;
    cf->client_header_timeout_ms = 30000;
    cf->client_body_timeout_ms = 60000;
    cf->client_idle_timeout_ms = 30000;
    cf->client_send_timeout_ms = 60000;
    cf->max_inflight_body = 1024 * 1024;
    cf->h2_max_concurrent_streams = 100;
}

static void
client_open(struct client *cl, struct event_base *evb, const struct proxy_conf *cf)
{
    nghttp2_session_callbacks *cbs;

    memset(cl, 0, sizeof(*cl));
    cl->evb = evb;
    cl->cf = *cf;
    cl->w.evb = evb;
    cl->w.cf = &cl->cf;
    bufferevent_pair_new(evb, BEV_OPT_DEFER_CALLBACKS, cl->pair);
    cl->c.w = &cl->w;
    cl->c.bev = cl->pair[0];
    strcpy(cl->c.peer, "test:1");
    closed = 0;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_send_callback(cbs, c_send);
    nghttp2_session_callbacks_set_on_header_callback(cbs, c_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, c_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, c_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, c_close);
    nghttp2_session_client_new(&cl->ngh, cbs, cl);
    nghttp2_session_callbacks_del(cbs);
    bufferevent_setcb(cl->pair[1], c_read, NULL, c_event, cl);
    bufferevent_enable(cl->pair[1], EV_READ | EV_WRITE);
    /* the preface lands in the server's input before h2 takes over, as after sniffing */
    nghttp2_submit_settings(cl->ngh, NGHTTP2_FLAG_NONE, NULL, 0);
    c_flush(cl);
    ok(h2_conn_start(&cl->c) == 0, "h2_conn_start");
}

static void
client_close(struct client *cl)
{
    h2_conn_free(cl->c.h2); /* what conn.c's reaper does */
    cl->c.h2 = NULL;
    nghttp2_session_del(cl->ngh);
    cl->ngh = NULL;
    if (cl->pair[1] != NULL) {
        bufferevent_free(cl->pair[1]);
    }
    bufferevent_free(cl->pair[0]);
}

static struct cstream *
cs_new(void)
{
    struct cstream *cs = xcalloc(1, sizeof(*cs));

    cs->body = evbuffer_new();
    cs->upload = evbuffer_new();
    return cs;
}

static void
cs_free(struct cstream *cs)
{
    evbuffer_free(cs->body);
    evbuffer_free(cs->upload);
    free(cs);
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }

/* Submits METHOD PATH; a body provider when UPLOAD is non-negative (END_STREAM after it
 * when END). */
static struct cstream *
request(struct client *cl, const char *method, const char *path, const char *authority, long upload,
        int end, const nghttp2_nv *extra, size_t nextra)
{
    struct cstream *cs = cs_new();
    nghttp2_nv nv[256] = {NV(":method", method), NV(":scheme", "http"), NV(":path", path),
                          NV(":authority", authority)};
    size_t n = 4, i;
    nghttp2_data_provider prd = {{.ptr = cs}, c_upload};

    for (i = 0; i < nextra && n < 256; i++) {
        nv[n++] = extra[i];
    }
    if (upload >= 0) {
        char *buf = xmalloc((size_t)upload + 1);
        long k;

        for (k = 0; k < upload; k++) {
            buf[k] = (char)('A' + k % 23);
        }
        evbuffer_add(cs->upload, buf, (size_t)upload);
        free(buf);
        cs->end_upload = end;
    }
    cs->id = nghttp2_submit_request(cl->ngh, NULL, nv, n, upload >= 0 ? &prd : NULL, cs);
    c_flush(cl);
    return cs;
}

typedef int (*pred_fn)(void *arg);

/* Runs the loop until PRED holds or MS pass; returns PRED's last value. */
static int
run_until(struct client *cl, pred_fn pred, void *arg, int ms)
{
    struct timeval start, now, slice = {0, 2000};

    gettimeofday(&start, NULL);
    for (;;) {
        c_flush(cl);
        if (pred != NULL && pred(arg)) {
            return 1;
        }
        gettimeofday(&now, NULL);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_usec - start.tv_usec) / 1000 > ms) {
            return pred != NULL ? pred(arg) : 1;
        }
        event_base_loopexit(cl->evb, &slice);
        event_base_dispatch(cl->evb);
    }
}

static int
is_closed(void *arg)
{
    return ((struct cstream *)arg)->closed;
}

static int
conn_closed(void *arg)
{
    (void)arg;
    return closed > 0;
}

static int
has_goaway(void *arg)
{
    return ((struct client *)arg)->goaways > 0;
}

static int
last_fake_has_bytes(void *arg)
{
    return nfakes > 0 && fakes[nfakes - 1]->body_len >= *(size_t *)arg;
}

static int
body_is(struct cstream *cs, const char *want, size_t len)
{
    char *got;
    int same;

    if (evbuffer_get_length(cs->body) != len) {
        return 0;
    }
    got = xmalloc(len + 1);
    evbuffer_copyout(cs->body, got, len);
    same = memcmp(got, want, len) == 0;
    free(got);
    return same;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void
test_hello(struct event_base *evb)
{
    struct proxy_conf cf;
    struct client cl;
    struct cstream *cs;

    default_conf(&cf);
    client_open(&cl, evb, &cf);
    cs = request(&cl, "GET", "/hello", "bucket.example:8000", -1, 1, NULL, 0);
    ok(run_until(&cl, is_closed, cs, 2000), "GET /hello completes");
    ok(cs->status == 200 && cs->close_code == NGHTTP2_NO_ERROR, "200, clean close");
    ok(body_is(cs, "hello", 5), "body hello");
    ok(strstr(cs->hdrs, "x-test: yes\n") != NULL, "header lowercased");
    ok(strstr(cs->hdrs, "connection") == NULL, "connection header dropped");
    ok(strstr(cs->hdrs, "content-length: 5\n") != NULL && strstr(cs->hdrs, "999") == NULL,
       "content-length from the argument only");
    ok(nfakes == 1 && strcmp(fakes[0]->method, "GET") == 0, "one req, method GET");
    ok(strcmp(fakes[0]->authority, "bucket.example:8000") == 0, "authority from :authority");
    ok(strcmp(fakes[0]->host, "bucket.example:8000") == 0, "host synthesized from :authority");
    ok(fakes[0]->has_body == 0 && fakes[0]->content_length == -1 && fakes[0]->body_ended == 0,
       "no body, no body_end");
    check_contract("hello");
    cs_free(cs);
    client_close(&cl);
    fakes_reset();
}

static void
test_echo_and_head(struct event_base *evb)
{
    struct proxy_conf cf;
    struct client cl;
    struct cstream *cs, *hd;
    nghttp2_nv cl_hdr[] = {NV("content-length", "300000")};
    char *want;
    long k;

    default_conf(&cf);
    client_open(&cl, evb, &cf);
    cs = request(&cl, "PUT", "/echo", "h", 300000, 1, cl_hdr, 1);
    ok(run_until(&cl, is_closed, cs, 3000), "PUT /echo 300000 bytes completes");
    want = xmalloc(300000);
    for (k = 0; k < 300000; k++) {
        want[k] = (char)('A' + k % 23);
    }
    ok(cs->status == 200 && body_is(cs, want, 300000), "echo body intact");
    ok(fakes[0]->content_length == 300000 && fakes[0]->has_body == 1 && fakes[0]->body_ended == 1,
       "content-length, has_body, one body_end");
    free(want);
    hd = request(&cl, "HEAD", "/head", "h", -1, 1, NULL, 0);
    ok(run_until(&cl, is_closed, hd, 2000), "HEAD completes");
    ok(hd->status == 200 && evbuffer_get_length(hd->body) == 0 &&
           strstr(hd->hdrs, "content-length: 1234\n") != NULL && hd->close_code == NGHTTP2_NO_ERROR,
       "HEAD: content-length kept, no DATA, clean close");
    check_contract("echo/head");
    cs_free(cs);
    cs_free(hd);
    client_close(&cl);
    fakes_reset();
}

/* A req that does not credit body bytes closes the window at max_inflight_body. */
static void
test_flow_control(struct event_base *evb)
{
    struct proxy_conf cf;
    struct client cl;
    struct cstream *cs, *e, *slow;
    struct req *r;
    size_t want = 1024 * 1024, total = 3 * 1024 * 1024;

    default_conf(&cf);
    cf.client_body_timeout_ms = 200;
    client_open(&cl, evb, &cf);
    cs = request(&cl, "PUT", "/hold", "h", (long)total, 1, NULL, 0);
    ok(run_until(&cl, last_fake_has_bytes, &want, 3000), "one stream window arrives");
    run_until(&cl, NULL, NULL, 500); /* longer than client_body_timeout: the store's fault */
    r = fakes[0];
    ok(r->body_len == want, "no more than the stream window without consumed(): %zu", r->body_len);
    ok(r->gone == 0 && !cs->closed, "shut window does not count as a slow client");
    r->ops->consumed(r->fe, r->uncredited);
    r->uncredited = 0;
    want = total;
    /* keep crediting as bytes arrive, like the store draining */
    while (!last_fake_has_bytes(&want)) {
        if (!run_until(&cl, NULL, NULL, 20)) {
            break;
        }
        if (r->uncredited) {
            r->ops->consumed(r->fe, r->uncredited);
            r->uncredited = 0;
        }
        if (r->body_len >= total || cs->closed) {
            break;
        }
    }
    ok(r->body_len == total && r->body_ended == 1, "whole body after credit: %zu", r->body_len);
    r->ops->send_head(r->fe, 200, NULL, 0, 0);
    fake_release(r, 1);
    ok(run_until(&cl, is_closed, cs, 2000) && cs->status == 200, "held PUT answered");
    /* a second upload still gets a full connection window: nothing leaked */
    e = request(&cl, "PUT", "/echo", "h", 2 * 1024 * 1024, 1, NULL, 0);
    ok(run_until(&cl, is_closed, e, 3000) && e->status == 200 &&
           evbuffer_get_length(e->body) == 2 * 1024 * 1024,
       "next upload unaffected");
    /* a client that stops sending with the window open is reset, its req told */
    slow = request(&cl, "PUT", "/hold", "h", 1000, 0, NULL, 0);
    ok(run_until(&cl, is_closed, slow, 2000) && slow->close_code == NGHTTP2_CANCEL,
       "stalled upload reset after client_body_timeout");
    ok(fakes[nfakes - 1]->gone == 1, "its req told the client is gone");
    check_contract("flow control");
    cs_free(cs);
    cs_free(e);
    cs_free(slow);
    client_close(&cl);
    fakes_reset();
}

/* The req answers while the body still flows: RST_STREAM(NO_ERROR), DATA credited. */
static void
test_early_response(struct event_base *evb)
{
    struct proxy_conf cf;
    struct client cl;
    struct cstream *cs, *e, *short_rest, *stalled;
    nghttp2_nv cl_hdr[] = {NV("content-length", "300000")};

    default_conf(&cf);
    cf.client_body_timeout_ms = 200;
    client_open(&cl, evb, &cf);
    cs = request(&cl, "PUT", "/early", "h", 200000, 0, NULL, 0);
    ok(run_until(&cl, is_closed, cs, 2000), "early answer closes the stream");
    ok(cs->status == 403 && body_is(cs, "<Error/>", 8), "403 with body");
    ok(cs->close_code == NGHTTP2_NO_ERROR, "reset with NO_ERROR (code %u)", cs->close_code);
    e = request(&cl, "PUT", "/echo", "h", 1500000, 1, NULL, 0);
    ok(run_until(&cl, is_closed, e, 3000) && e->status == 200, "connection still usable");
    /* a short rest announced by content-length is drained, not reset (curl 7.88 friendly) */
    short_rest = request(&cl, "PUT", "/early", "h", 300000, 1, cl_hdr, 1);
    ok(run_until(&cl, is_closed, short_rest, 2000) && short_rest->status == 403 &&
           short_rest->close_code == NGHTTP2_NO_ERROR &&
           evbuffer_get_length(short_rest->upload) == 0,
       "short rest drained: upload completed, clean close");
    /* ... but a client that stops sending is reset after client_body_timeout */
    stalled = request(&cl, "PUT", "/early", "h", 100000, 0, cl_hdr, 1);
    ok(run_until(&cl, is_closed, stalled, 2000) && stalled->status == 403 &&
           stalled->close_code == NGHTTP2_NO_ERROR,
       "stalled rest reset with NO_ERROR");
    check_contract("early");
    cs_free(cs);
    cs_free(e);
    cs_free(short_rest);
    cs_free(stalled);
    client_close(&cl);
    fakes_reset();
}

static void
test_big_response(struct event_base *evb)
{
    struct proxy_conf cf;
    struct client cl;
    struct cstream *cs;
    size_t i, len;
    unsigned char *p;
    int good = 1;

    default_conf(&cf);
    client_open(&cl, evb, &cf);
    cs = request(&cl, "GET", "/big", "h", -1, 1, NULL, 0);
    ok(run_until(&cl, is_closed, cs, 5000), "GET /big completes");
    len = evbuffer_get_length(cs->body);
    ok(len == BIG_TOTAL, "all %d bytes (got %zu)", BIG_TOTAL, len);
    p = evbuffer_pullup(cs->body, -1);
    for (i = 0; i < len && good; i++) {
        good = p[i] == (unsigned char)('a' + i % 26);
    }
    ok(good, "bytes in order");
    ok(fakes[0]->writable > 0, "req_client_writable used (%d)", fakes[0]->writable);
    ok(fakes[0]->max_pending < REQ_CLIENT_HIGH_WATERMARK + BIG_CHUNK, "pending bounded: %zu",
       fakes[0]->max_pending);
    check_contract("big");
    cs_free(cs);
    client_close(&cl);
    fakes_reset();
}

static void
test_client_reset_and_eof(struct event_base *evb)
{
    struct proxy_conf cf;
    struct client cl;
    struct cstream *a, *b;
    size_t one = 1;

    default_conf(&cf);
    client_open(&cl, evb, &cf);
    a = request(&cl, "PUT", "/hold", "h", 1000, 0, NULL, 0);
    ok(run_until(&cl, last_fake_has_bytes, &one, 2000), "held request started");
    nghttp2_submit_rst_stream(cl.ngh, NGHTTP2_FLAG_NONE, a->id, NGHTTP2_CANCEL);
    ok(run_until(&cl, is_closed, a, 2000), "client reset");
    run_until(&cl, NULL, NULL, 50);
    ok(fakes[0]->gone == 1, "req_client_gone once after RST_STREAM");
    b = request(&cl, "GET", "/hold", "h", -1, 1, NULL, 0);
    run_until(&cl, NULL, NULL, 100);
    ok(nfakes == 2 && fakes[1]->gone == 0, "second held request live");
    bufferevent_flush(cl.pair[1], EV_WRITE, BEV_FINISHED); /* the client vanishes: EOF */
    bufferevent_free(cl.pair[1]);
    cl.pair[1] = NULL;
    ok(run_until(&cl, conn_closed, NULL, 2000), "EOF closes the connection");
    ok(fakes[1]->gone == 1, "live req told the client is gone");
    check_contract("reset/eof");
    cs_free(a);
    cs_free(b);
    client_close(&cl);
    fakes_reset();
}

static void
test_header_limits(struct event_base *evb)
{
    struct proxy_conf cf;
    struct client cl;
    struct cstream *cs, *mm;
    nghttp2_nv many[150], host_nv[] = {NV("host", "other.example")};
    char names[150][16];
    int i;

    default_conf(&cf);
    client_open(&cl, evb, &cf);
    for (i = 0; i < 150; i++) {
        snprintf(names[i], sizeof(names[i]), "x-h-%d", i);
        many[i] = (nghttp2_nv){(uint8_t *)names[i], (uint8_t *)"v", strlen(names[i]), 1,
                               NGHTTP2_NV_FLAG_NONE};
    }
    cs = request(&cl, "GET", "/hello", "h", -1, 1, many, 150);
    ok(run_until(&cl, is_closed, cs, 2000), "too many headers answered");
    ok(cs->status == 400 && nfakes == 0, "400 without a req");
    ok(evbuffer_search(cs->body, "RequestHeaderSectionTooLarge", 28, NULL).pos >= 0,
       "S3 error code in the body");
    mm = request(&cl, "GET", "/hello", "bucket.example", -1, 1, host_nv, 1);
    ok(run_until(&cl, is_closed, mm, 2000) && mm->status == 400 && nfakes == 0,
       "host disagreeing with :authority refused");
    cs_free(cs);
    cs_free(mm);
    client_close(&cl);
    fakes_reset();
}

static void
test_rapid_reset(struct event_base *evb)
{
    struct proxy_conf cf;
    struct client cl;
    struct cstream *cs[300];
    int i;

    default_conf(&cf);
    client_open(&cl, evb, &cf);
    run_until(&cl, NULL, NULL, 20);
    for (i = 0; i < 300; i++) {
        cs[i] = request(&cl, "GET", "/hold", "h", -1, 1, NULL, 0);
        nghttp2_submit_rst_stream(cl.ngh, NGHTTP2_FLAG_NONE, cs[i]->id, NGHTTP2_CANCEL);
        c_flush(&cl);
    }
    ok(run_until(&cl, conn_closed, NULL, 3000), "rapid reset closes the connection");
    ok(cl.goaways > 0 && cl.goaway_code == NGHTTP2_ENHANCE_YOUR_CALM,
       "GOAWAY ENHANCE_YOUR_CALM (code %u)", cl.goaway_code);
    check_contract("rapid reset");
    for (i = 0; i < 300; i++) {
        cs_free(cs[i]);
    }
    client_close(&cl);
    fakes_reset();
}

static void
test_idle_and_drain(struct event_base *evb)
{
    struct proxy_conf cf;
    struct client cl;
    struct cstream *cs, *late;
    struct req *r;

    default_conf(&cf);
    cf.client_idle_timeout_ms = 100;
    client_open(&cl, evb, &cf);
    ok(run_until(&cl, conn_closed, NULL, 2000), "idle connection closed");
    ok(cl.goaways == 1 && cl.goaway_code == NGHTTP2_NO_ERROR, "idle GOAWAY NO_ERROR");
    client_close(&cl);

    default_conf(&cf);
    client_open(&cl, evb, &cf);
    cs = request(&cl, "GET", "/hold", "h", -1, 1, NULL, 0);
    run_until(&cl, NULL, NULL, 50);
    h2_conn_drain(&cl.c);
    late = request(&cl, "GET", "/hello", "h", -1, 1, NULL, 0); /* races the notice */
    ok(run_until(&cl, has_goaway, &cl, 1000) && cl.goaway_last == INT32_MAX,
       "shutdown notice first");
    ok(run_until(&cl, is_closed, late, 1000) && late->status == 200,
       "request sent before the final GOAWAY still served");
    run_until(&cl, NULL, NULL, 1300);
    ok(cl.goaways == 2 && cl.goaway_last == late->id, "final GOAWAY names the last stream");
    ok(closed == 0 && !cs->closed, "held stream keeps the connection open");
    r = fakes[0];
    r->ops->send_head(r->fe, 204, NULL, 0, -1);
    fake_release(r, 1);
    ok(run_until(&cl, conn_closed, NULL, 2000) && cs->closed && cs->status == 204,
       "last stream done: connection closed");
    ok(strstr(cs->hdrs, "content-length") == NULL, "204 carries no content-length");
    check_contract("drain");
    cs_free(cs);
    cs_free(late);
    client_close(&cl);
    fakes_reset();
}

static void
test_ping_flood(struct event_base *evb)
{
    struct proxy_conf cf;
    struct client cl;
    int i;

    default_conf(&cf);
    client_open(&cl, evb, &cf);
    run_until(&cl, NULL, NULL, 20);
    for (i = 0; i < 500; i++) {
        nghttp2_submit_ping(cl.ngh, NGHTTP2_FLAG_NONE, NULL);
    }
    c_flush(&cl);
    ok(run_until(&cl, conn_closed, NULL, 2000), "PING flood closes the connection");
    client_close(&cl);
    fakes_reset();
}

int
main(void)
{
    struct event_base *evb = event_base_new();

    log_set_level(LOG_ERROR);
    test_hello(evb);
    test_echo_and_head(evb);
    test_flow_control(evb);
    test_early_response(evb);
    test_big_response(evb);
    test_client_reset_and_eof(evb);
    test_header_limits(evb);
    test_rapid_reset(evb);
    test_ping_flood(evb);
    test_idle_and_drain(evb);
    event_base_free(evb);
    return done_testing();
}
