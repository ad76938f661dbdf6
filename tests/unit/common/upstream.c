/*
 * Unit tests for common/upstream.c, the plain-http client: a scripted store runs in a thread
 * on a loopback socket (blocking I/O, one step after another), the client runs on a libevent
 * loop in the main thread. Each case checks what the caller saw (status, headers, body,
 * on_done's error) and what the store saw (requests, connections, bytes before the close).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/upstream.h"
#include "test.h"

/* ---- the scripted store --------------------------------------------------------------------- */

enum step_kind {
    ACCEPT,     /* take the next connection */
    READ_REQ,   /* read one request (head and Content-Length body) into the log */
    WRITE,      /* send TEXT */
    WRITE_SLOW, /* send TEXT a byte at a time */
    CLOSE,      /* close the connection */
    READ_EOF,   /* read until the client closes; the byte count goes to the log */
    BIG,        /* TEXT "N SENT": a 200 head saying Content-Length N, SENT bytes of pattern() */
    END,
};

struct step {
    enum step_kind kind;
    const char *text;
};

/* Byte I of a BIG body: not periodic in any power of two, so a shifted piece shows. */
static unsigned char
pattern(long i)
{
    return (unsigned char)(i % 251);
}

struct store {
    int lfd;                  /* listening socket */
    int port;
    const struct step *steps; /* the script (borrowed) */
    char log[8192];           /* "REQ <head's first line> body=<n> [<body>]\n", "EOF <n>\n" */
    int accepts;              /* connections taken */
    volatile int finished;    /* the script ran to its end */
};

static void __attribute__((format(printf, 2, 3)))
log_add(struct store *s, const char *fmt, ...)
{
    size_t used = strlen(s->log);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->log + used, sizeof(s->log) - used, fmt, ap);
    va_end(ap);
}

static void
read_request(struct store *s, int fd)
{
    char head[8192], body[4096];
    size_t hl = 0;
    long cl = 0, got = 0;
    char *p;

    for (;;) {
        if (hl >= sizeof(head) - 1 || read(fd, head + hl, 1) <= 0) {
            log_add(s, "EOF-in-head %ld\n", (long)hl);
            return;
        }
        head[++hl] = '\0';
        if (hl >= 4 && memcmp(head + hl - 4, "\r\n\r\n", 4) == 0) {
            break;
        }
    }
    p = strcasestr(head, "\r\ncontent-length:");
    if (p != NULL) {
        cl = strtol(p + 17, NULL, 10);
    }
    while (got < cl && got < (long)sizeof(body) - 1) {
        long want = cl - got < (long)sizeof(body) - 1 - got ? cl - got : (long)sizeof(body) - 1 - got;
        ssize_t n = read(fd, body + got, (size_t)want);

        if (n <= 0) {
            break;
        }
        got += n;
    }
    body[got] = '\0';
    log_add(s, "REQ %.*s body=%ld [%s]\n", (int)strcspn(head, "\r"), head, got, body);
}

static void *
store_main(void *arg)
{
    struct store *s = arg;
    const struct step *st;
    int fd = -1;

    for (st = s->steps; st->kind != END; st++) {
        switch (st->kind) {
        case ACCEPT:
            fd = accept(s->lfd, NULL, NULL);
            s->accepts++;
            break;
        case READ_REQ:
            read_request(s, fd);
            break;
        case WRITE:
            (void)!write(fd, st->text, strlen(st->text));
            break;
        case WRITE_SLOW: {
            const char *p;

            for (p = st->text; *p; p++) {
                (void)!write(fd, p, 1);
                usleep(200);
            }
            break;
        }
        case CLOSE:
            close(fd);
            fd = -1;
            break;
        case READ_EOF: {
            char b[4096];
            long total = 0;
            ssize_t n;

            while ((n = read(fd, b, sizeof(b))) > 0) {
                total += n;
            }
            log_add(s, "EOF %ld\n", total);
            break;
        }
        case BIG: {
            char head[128], b[65536];
            long off = 0, n = 0, sent = 0;
            int len;

            (void)sscanf(st->text, "%ld %ld", &n, &sent);
            len = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n\r\n", n);

            (void)!send(fd, head, (size_t)len, MSG_NOSIGNAL);
            while (off < sent) {
                long k, want = sent - off < (long)sizeof(b) ? sent - off : (long)sizeof(b);
                ssize_t w;

                for (k = 0; k < want; k++) {
                    b[k] = (char)pattern(off + k);
                }
                w = send(fd, b, (size_t)want, MSG_NOSIGNAL);
                if (w <= 0) {
                    break; /* the client closed: the case checks what it saw */
                }
                off += w;
            }
            log_add(s, "BIG %ld\n", off);
            break;
        }
        case END:
            break;
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    s->finished = 1;
    return NULL;
}

static void
store_start(struct store *s, const struct step *steps, pthread_t *th)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int one = 1;

    memset(s, 0, sizeof(*s));
    s->steps = steps;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa));
    listen(s->lfd, 8);
    getsockname(s->lfd, (struct sockaddr *)&sa, &len);
    s->port = ntohs(sa.sin_port);
    pthread_create(th, NULL, store_main, s);
}

static void
store_stop(struct store *s, pthread_t th)
{
    pthread_join(th, NULL);
    close(s->lfd);
}

/* ---- the caller ----------------------------------------------------------------------------- */

struct caller {
    struct event_base *evb;
    struct upstream_xfer *x;
    int status;                 /* from on_head */
    char headers[2048];         /* "name=value;" */
    char body[65536];
    size_t body_len;
    int done;                   /* on_done ran */
    const char *err;            /* its argument */
    const char *up;             /* request body to give, NULL for none */
    size_t up_pos, up_len;
    int up_pause_every;         /* read_body pauses before every Nth call (0: never) */
    int up_calls;
    size_t up_stop_at;          /* read_body returns 0 here (short body), 0: never */
    int pause_body_once;        /* on_body returns 1 the first time */
    int abort_in_body;          /* on_body aborts the transfer */
    int aborted;
    struct event *resume_ev;    /* resumes whatever is paused, one loop turn later */
    int send_paused, recv_paused;
    const struct upstream_xfer_ops *ops; /* NULL: ops */
    /* splicing (sink_ops) */
    int sink;                   /* the socket sink_fd gives */
    int sink_later;             /* sink_fd says UPSTREAM_SINK_LATER this many times first */
    int sink_asked;             /* sink_fd calls */
    size_t sink_start;          /* body bytes on_body had when sink_fd gave the socket */
    int64_t stall_ms;           /* sink_fd's *stall_ms */
    size_t sunk;                /* on_sunk's total */
    int abort_in_sunk;          /* on_sunk aborts the transfer */
};

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct caller *c = arg;

    (void)fd;
    (void)what;
    if (c->send_paused) {
        c->send_paused = 0;
        upstream_resume_body(c->x);
    }
    if (c->recv_paused) {
        c->recv_paused = 0;
        upstream_resume_response(c->x);
    }
}

static size_t
c_read_body(void *arg, char *buf, size_t max)
{
    struct caller *c = arg;
    size_t n = c->up_len - c->up_pos;

    if (c->up_pause_every && ++c->up_calls % c->up_pause_every == 0) {
        struct timeval tv = {0, 2000};

        c->send_paused = 1;
        event_add(c->resume_ev, &tv);
        return UPSTREAM_PAUSE;
    }
    if (c->up_stop_at && c->up_pos >= c->up_stop_at) {
        return 0;
    }
    if (n > max) {
        n = max;
    }
    if (n > 3) {
        n = 3; /* small pieces: many calls */
    }
    memcpy(buf, c->up + c->up_pos, n);
    c->up_pos += n;
    return n;
}

static void
c_on_header(void *arg, struct slice name, struct slice value)
{
    struct caller *c = arg;
    size_t used = strlen(c->headers);

    snprintf(c->headers + used, sizeof(c->headers) - used, "%.*s=%.*s;", (int)name.len, name.ptr,
             (int)value.len, value.ptr);
}

static void
c_on_head(void *arg, int status)
{
    ((struct caller *)arg)->status = status;
}

static int
c_on_body(void *arg, const char *data, size_t len)
{
    struct caller *c = arg;

    if (c->abort_in_body) {
        upstream_abort(c->x);
        c->aborted = 1;
        return 0;
    }
    if (c->pause_body_once) {
        struct timeval tv = {0, 5000};

        c->pause_body_once = 0;
        c->recv_paused = 1;
        event_add(c->resume_ev, &tv);
        return 1;
    }
    if (c->body_len + len < sizeof(c->body)) {
        memcpy(c->body + c->body_len, data, len);
    }
    c->body_len += len;
    return 0;
}

static void
c_on_done(void *arg, const char *err)
{
    struct caller *c = arg;

    c->done = 1;
    c->err = err;
}

static const struct upstream_xfer_ops ops = {
    .read_body = c_read_body,
    .on_header = c_on_header,
    .on_head = c_on_head,
    .on_body = c_on_body,
    .on_done = c_on_done,
};

static int
c_sink_fd(void *arg, int64_t *stall_ms)
{
    struct caller *c = arg;

    c->sink_asked++;
    if (c->sink_later > 0) {
        c->sink_later--;
        return UPSTREAM_SINK_LATER;
    }
    c->sink_start = c->body_len;
    *stall_ms = c->stall_ms;
    return c->sink;
}

static void
c_on_sunk(void *arg, size_t n)
{
    struct caller *c = arg;

    c->sunk += n;
    if (c->abort_in_sunk) {
        upstream_abort(c->x);
        c->aborted = 1;
    }
}

static const struct upstream_xfer_ops sink_ops = {
    .read_body = c_read_body,
    .on_header = c_on_header,
    .on_head = c_on_head,
    .on_body = c_on_body,
    .on_done = c_on_done,
    .sink_fd = c_sink_fd,
    .on_sunk = c_on_sunk,
};

/* The client's side of a sink: a loopback TCP pair; a thread reads the far end into a
 * buffer until EOF (when asked to read at all). */
struct sink_peer {
    int near, far;              /* near: given to the transfer (non-blocking); far: read */
    unsigned char *got;         /* what arrived (owned) */
    size_t cap, len;
    pthread_t th;
    int reading;
};

static void *
sink_reader(void *arg)
{
    struct sink_peer *p = arg;
    ssize_t n;

    while (p->len < p->cap && (n = read(p->far, p->got + p->len, p->cap - p->len)) > 0) {
        p->len += (size_t)n;
    }
    return NULL;
}

/* SMALL_BUFS: socket buffers kept small, so a peer that does not read blocks the sink soon. */
static void
sink_peer_open(struct sink_peer *p, size_t cap, int read_it, int small_bufs)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int l = socket(AF_INET, SOCK_STREAM, 0), sz = 16384;

    memset(p, 0, sizeof(*p));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(l, (struct sockaddr *)&sa, sizeof(sa));
    listen(l, 1);
    getsockname(l, (struct sockaddr *)&sa, &len);
    p->near = socket(AF_INET, SOCK_STREAM, 0);
    if (small_bufs) {
        setsockopt(p->near, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        setsockopt(l, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    }
    connect(p->near, (struct sockaddr *)&sa, sizeof(sa));
    p->far = accept(l, NULL, NULL);
    close(l);
    evutil_make_socket_nonblocking(p->near);
    p->got = malloc(cap);
    p->cap = cap;
    p->reading = read_it;
    if (read_it) {
        pthread_create(&p->th, NULL, sink_reader, p);
    }
}

static void
sink_peer_close(struct sink_peer *p)
{
    close(p->near);
    if (p->reading) {
        pthread_join(p->th, NULL);
    }
    close(p->far);
    free(p->got);
}

/* Whether P received the body bytes from START on, N of them, in order. */
static int
sink_peer_has(const struct sink_peer *p, size_t start, size_t n)
{
    size_t i;

    if (p->len != n) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (p->got[i] != pattern((long)(start + i))) {
            return 0;
        }
    }
    return 1;
}

static struct event_base *evb;
static struct upstream *up;
static struct store *cur_store;

static void
watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct caller *c = arg;

    (void)fd;
    (void)what;
    if (c->done || (c->aborted && cur_store->finished)) {
        event_base_loopbreak(evb);
    }
}

/* Runs one transfer to its end (or 5 s). */
static void
run(struct caller *c, const char *method, const char *path, int64_t body_length)
{
    static const char *hdrs[] = {"Host: store", "x-amz-date: 20260101T000000Z", NULL};
    struct upstream_xfer_args a = {method, path, hdrs, body_length};
    struct event *watch = event_new(evb, -1, EV_PERSIST, watch_cb, c);
    struct timeval tick = {0, 1000}, limit = {5, 0};

    c->evb = evb;
    c->resume_ev = evtimer_new(evb, resume_cb, c);
    c->up_len = c->up ? strlen(c->up) : 0;
    c->x = upstream_start(up, &a, c->ops ? c->ops : &ops, c);
    event_add(watch, &tick);
    event_base_loopexit(evb, &limit);
    event_base_dispatch(evb);
    event_free(watch);
    event_free(c->resume_ev);
}

static struct upstream *
make_upstream(int port)
{
    char url[64];
    struct upstream_opts o = {url, NULL, 1, 2000, 8};

    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    return upstream_create(evb, &o);
}

#define RESP_OK_HELLO "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\nhello"

int
main(void)
{
    struct store s;
    pthread_t th;

    evb = event_base_new();
    cur_store = &s;

    {
        /* a Content-Length body arriving a byte at a time; then the connection is reused */
        static const struct step steps[] = {{ACCEPT, NULL},  {READ_REQ, NULL},
                                            {WRITE_SLOW, RESP_OK_HELLO},
                                            {READ_REQ, NULL}, {WRITE, RESP_OK_HELLO}, {END, NULL}};
        struct caller c = {0}, c2 = {0};

        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        run(&c, "GET", "/b/k%20x?tagging", -1);
        ok(c.done && c.err == NULL && c.status == 200, "GET: done, 200");
        ok(c.body_len == 5 && memcmp(c.body, "hello", 5) == 0, "GET: body whole across 1-byte reads");
        ok(strstr(c.headers, "ETag=\"e\";") != NULL && strstr(c.headers, "Content-Length=5;"),
           "GET: headers passed on (%s)", c.headers);
        run(&c2, "GET", "/b/k2", -1);
        ok(c2.done && c2.err == NULL && c2.body_len == 5, "second GET on the kept connection");
        store_stop(&s, th);
        ok(s.accepts == 1, "one connection for both");
        ok(strstr(s.log, "REQ GET /b/k%20x?tagging HTTP/1.1 body=0") != NULL,
           "path sent as given, no Content-Length without a body (%s)", s.log);
        upstream_destroy(up);
    }
    {
        /* chunked, with an extension and a trailer; HEAD ignores the length it announces */
        static const struct step steps[] = {
            {ACCEPT, NULL},
            {READ_REQ, NULL},
            {WRITE_SLOW, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: "
                         "chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n"},
            {READ_REQ, NULL},
            {WRITE, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"},
            {READ_REQ, NULL},
            {WRITE, "HTTP/1.1 204 No Content\r\n\r\n"},
            {END, NULL}};
        struct caller c = {0}, h = {0}, d = {0};

        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        run(&c, "GET", "/b/k", -1);
        ok(c.done && c.err == NULL && c.status == 200, "chunked: done, 200 after a 100");
        ok(c.body_len == 19 && memcmp(c.body, "abc0123456789abcdef", 19) == 0, "chunked: body decoded");
        run(&h, "HEAD", "/b/k", -1);
        ok(h.done && h.err == NULL && h.status == 200 && h.body_len == 0, "HEAD: no body read");
        run(&d, "DELETE", "/b/k", -1);
        ok(d.done && d.err == NULL && d.status == 204, "204 after HEAD on the same connection");
        store_stop(&s, th);
        ok(s.accepts == 1, "chunked, HEAD and 204 share one connection");
        upstream_destroy(up);
    }
    {
        /* a body that ends with the connection; the next request needs a new one */
        static const struct step steps[] = {{ACCEPT, NULL},
                                            {READ_REQ, NULL},
                                            {WRITE, "HTTP/1.1 200 OK\r\n\r\nuntil the end"},
                                            {CLOSE, NULL},
                                            {ACCEPT, NULL},
                                            {READ_REQ, NULL},
                                            {WRITE, RESP_OK_HELLO},
                                            {END, NULL}};
        struct caller c = {0}, c2 = {0};

        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        run(&c, "GET", "/b/k", -1);
        ok(c.done && c.err == NULL && c.body_len == 13, "close-delimited body read to EOF");
        run(&c2, "GET", "/b/k", -1);
        ok(c2.done && c2.err == NULL && c2.body_len == 5, "next request on a new connection");
        store_stop(&s, th);
        ok(s.accepts == 2, "two connections");
        upstream_destroy(up);
    }
    {
        /* PUT: the body comes in 3-byte pieces with pauses; the answer waits for it */
        static const struct step steps[] = {{ACCEPT, NULL},
                                            {READ_REQ, NULL},
                                            {WRITE, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
                                            {END, NULL}};
        struct caller c = {0};

        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        c.up = "the quick brown fox jumps over the lazy dog";
        c.up_pause_every = 4;
        run(&c, "PUT", "/b/k", (int64_t)strlen(c.up));
        ok(c.done && c.err == NULL && c.status == 200, "PUT with pauses: 200");
        store_stop(&s, th);
        ok(strstr(s.log, "REQ PUT /b/k HTTP/1.1 body=43 [the quick brown fox jumps over the lazy dog]"),
           "the store got the whole body with its Content-Length (%s)", s.log);
        upstream_destroy(up);
    }
    {
        /* the caller's body ends short of its length: error, and the store sees the close
         * before the declared length (so it never commits it) */
        static const struct step steps[] = {{ACCEPT, NULL}, {READ_REQ, NULL}, {END, NULL}};
        struct caller c = {0};

        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        c.up = "0123456789";
        c.up_stop_at = 6;
        c.up_pause_every = 2; /* so the first bytes go out before the body runs dry */
        run(&c, "PUT", "/b/k", 10);
        ok(c.done && c.err == upstream_err_io, "short body: upstream_err_io");
        store_stop(&s, th);
        ok(strstr(s.log, "body=6") != NULL, "the store saw 6 of 10 bytes, then the close (%s)", s.log);
        upstream_destroy(up);
    }
    {
        /* the store answers before the body is all there (an early error) and closes */
        static const struct step steps[] = {
            {ACCEPT, NULL},
            {WRITE, "HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\nConnection: close\r\n\r\ndenied!"},
            {CLOSE, NULL},
            {END, NULL}};
        struct caller c = {0};

        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        c.up = "0123456789";
        c.up_pause_every = 1; /* never gives a byte: waits for resume forever */
        run(&c, "PUT", "/b/k", 10);
        ok(c.done && c.err == NULL && c.status == 403 && c.body_len == 7, "early answer delivered");
        store_stop(&s, th);
        upstream_destroy(up);
    }
    {
        /* a kept-alive connection the store closed: the GET is sent again on a fresh one */
        static const struct step steps[] = {{ACCEPT, NULL},   {READ_REQ, NULL},
                                            {WRITE, RESP_OK_HELLO},
                                            {READ_REQ, NULL}, {CLOSE, NULL},
                                            {ACCEPT, NULL},   {READ_REQ, NULL},
                                            {WRITE, RESP_OK_HELLO}, {END, NULL}};
        struct caller c = {0}, c2 = {0};

        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        run(&c, "GET", "/b/1", -1);
        run(&c2, "GET", "/b/2", -1);
        ok(c2.done && c2.err == NULL && c2.body_len == 5, "GET retried after a stale connection");
        store_stop(&s, th);
        ok(s.accepts == 2, "on a second connection");
        upstream_destroy(up);
    }
    {
        /* paused response, then resumed; then an abort from inside on_body */
        static const struct step steps[] = {{ACCEPT, NULL}, {READ_REQ, NULL},
                                            {WRITE, RESP_OK_HELLO},
                                            {READ_REQ, NULL},
                                            {WRITE, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"},
                                            {READ_EOF, NULL}, {END, NULL}};
        struct caller c = {0}, a = {0};

        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        c.pause_body_once = 1;
        run(&c, "GET", "/b/k", -1);
        ok(c.done && c.err == NULL && c.body_len == 5 && memcmp(c.body, "hello", 5) == 0,
           "paused body delivered whole after resume");
        a.abort_in_body = 1;
        run(&a, "GET", "/b/k", -1);
        ok(a.aborted && !a.done, "aborted: no on_done");
        store_stop(&s, th);
        ok(strstr(s.log, "EOF 0") != NULL, "abort closed the connection");
        upstream_destroy(up);
    }
    {
        /* malformed answers are errors, not crashes */
        static const struct step steps[] = {{ACCEPT, NULL}, {READ_REQ, NULL},
                                            {WRITE, "HTTP/1.1 2x0 OK\r\n\r\n"}, {READ_EOF, NULL},
                                            {ACCEPT, NULL}, {READ_REQ, NULL},
                                            {WRITE, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"},
                                            {READ_EOF, NULL},
                                            {ACCEPT, NULL}, {READ_REQ, NULL},
                                            {WRITE, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"},
                                            {CLOSE, NULL}, {END, NULL}};
        struct caller c1 = {0}, c2 = {0}, c3 = {0};

        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        run(&c1, "GET", "/b/k", -1);
        ok(c1.done && c1.err == upstream_err_io, "bad status line: upstream_err_io");
        run(&c2, "GET", "/b/k", -1);
        ok(c2.done && c2.err == upstream_err_io, "bad chunk size: upstream_err_io");
        run(&c3, "GET", "/b/k", -1);
        ok(c3.done && c3.err == upstream_err_io && c3.body_len == 5, "body cut short: upstream_err_io");
        store_stop(&s, th);
        upstream_destroy(up);
    }
    {
        /* nobody listening */
        struct caller c = {0};
        int fd = socket(AF_INET, SOCK_STREAM, 0), port;
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);

        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        getsockname(fd, (struct sockaddr *)&sa, &len);
        port = ntohs(sa.sin_port);
        close(fd);
        up = make_upstream(port);
        s.finished = 1;
        run(&c, "GET", "/b/k", -1);
        ok(c.done && c.err == upstream_err_connect, "refused: upstream_err_connect");
        upstream_destroy(up);
    }
    {
        /* a large body is spliced into the caller's socket once nothing is buffered and the
         * caller is ready; the connection is reused afterwards */
        enum { N = 3 * 1024 * 1024 + 17 };
        static const struct step steps[] = {{ACCEPT, NULL}, {READ_REQ, NULL},
                                            {BIG, "3145745 3145745"}, {READ_REQ, NULL},
                                            {WRITE, RESP_OK_HELLO}, {END, NULL}};
        struct caller c = {.ops = &sink_ops, .sink_later = 1, .stall_ms = 2000}, c2 = {0};
        struct sink_peer p;

        sink_peer_open(&p, 2 * N, 1, 0);
        c.sink = p.near;
        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        run(&c, "GET", "/b/big", -1);
        shutdown(p.near, SHUT_WR);
        pthread_join(p.th, NULL);
        p.reading = 0;
        ok(c.done && c.err == NULL && c.status == 200, "splice: done, 200 (err %s)",
           c.err ? c.err : "none");
        ok(c.sink_asked >= 2 && c.body_len == c.sink_start && c.body_len + c.sunk == N,
           "splice: on_body until the socket was given (%zu), on_sunk for the rest (%zu)",
           c.body_len, c.sunk);
        ok(sink_peer_has(&p, c.sink_start, c.sunk), "splice: the socket got the rest in order (%zu)",
           p.len);
        run(&c2, "GET", "/b/k", -1);
        ok(c2.done && c2.err == NULL && c2.body_len == 5, "splice: next GET on the same connection");
        store_stop(&s, th);
        ok(s.accepts == 1, "splice: one connection for both");
        sink_peer_close(&p);
        upstream_destroy(up);
    }
    {
        /* the store closes before its body is complete; then a caller that never takes a
         * socket (UPSTREAM_SINK_NONE) is not asked again */
        enum { N = 2 * 1024 * 1024 };
        static const struct step steps[] = {{ACCEPT, NULL}, {READ_REQ, NULL},
                                            {BIG, "2097152 1048576"}, {CLOSE, NULL},
                                            {ACCEPT, NULL}, {READ_REQ, NULL},
                                            {BIG, "2097152 2097152"}, {END, NULL}};
        struct caller c = {.ops = &sink_ops, .stall_ms = 2000};
        struct caller c2 = {.ops = &sink_ops, .sink = UPSTREAM_SINK_NONE};
        struct sink_peer p;

        sink_peer_open(&p, 2 * N, 1, 0);
        c.sink = p.near;
        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        run(&c, "GET", "/b/cut", -1);
        ok(c.done && c.err == upstream_err_io && c.body_len + c.sunk < N,
           "splice: a body cut short is upstream_err_io (%zu + %zu)", c.body_len, c.sunk);
        run(&c2, "GET", "/b/whole", -1);
        ok(c2.done && c2.err == NULL && c2.body_len == N && c2.sink_asked == 1 && c2.sunk == 0,
           "splice: UPSTREAM_SINK_NONE: asked once, all through on_body (%zu)", c2.body_len);
        store_stop(&s, th);
        sink_peer_close(&p);
        upstream_destroy(up);
    }
    {
        /* a socket that takes nothing fails the transfer after the stall time */
        enum { N = 64 * 1024 * 1024 };
        static const struct step steps[] = {{ACCEPT, NULL}, {READ_REQ, NULL},
                                            {BIG, "67108864 67108864"}, {END, NULL}};
        struct caller c = {.ops = &sink_ops, .stall_ms = 300};
        struct sink_peer p;

        sink_peer_open(&p, 1, 0, 1);
        c.sink = p.near;
        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        run(&c, "GET", "/b/stall", -1);
        ok(c.done && c.err == upstream_err_sink && c.sunk < N,
           "splice: a socket that stalls is upstream_err_sink (%zu taken)", c.sunk);
        store_stop(&s, th);
        ok(strstr(s.log, "BIG") != NULL, "splice: the store's connection was closed (%s)", s.log);
        sink_peer_close(&p);
        upstream_destroy(up);
    }
    {
        /* aborted from on_sunk: no on_done, the store sees the connection close */
        enum { N = 8 * 1024 * 1024 };
        static const struct step steps[] = {{ACCEPT, NULL}, {READ_REQ, NULL},
                                            {BIG, "8388608 8388608"}, {END, NULL}};
        struct caller c = {.ops = &sink_ops, .stall_ms = 2000, .abort_in_sunk = 1};
        struct sink_peer p;

        sink_peer_open(&p, 2 * N, 1, 0);
        c.sink = p.near;
        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        run(&c, "GET", "/b/abort", -1);
        ok(c.aborted && !c.done && c.sunk > 0 && c.sunk < N, "splice: abort from on_sunk, no on_done");
        store_stop(&s, th);
        sink_peer_close(&p);
        upstream_destroy(up);
    }
    event_base_free(evb);
    return done_testing();
}
