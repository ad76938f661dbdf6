/*
 * Unit tests for common/upstream.c and upstream_tls.c, our own HTTP/1.1 client: a scripted
 * store runs in a thread on a loopback socket (blocking I/O, one step after another; TLS
 * with a certificate made here, when asked), the client runs on a libevent loop in the main
 * thread. Each case checks what the caller saw (status, headers, body, on_done's error) and
 * what the store saw (requests, connections, bytes before the close).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/log.h"
#include "common/upstream.h"
#include "test.h"

/* ---- the scripted store --------------------------------------------------------------------- */

enum step_kind {
    ACCEPT,     /* take the next connection (and do the TLS handshake on a TLS store) */
    ACCEPT_TCP, /* take the next connection, no TLS handshake */
    READ_REQ,   /* read one request (head and Content-Length body) into the log */
    WRITE,      /* send TEXT */
    WRITE_SLOW, /* send TEXT a byte at a time */
    CLOSE,      /* close the connection (after a close_notify on TLS) */
    CUT,        /* close the TCP connection with no close_notify on TLS */
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
    SSL_CTX *tls;             /* a TLS store: its context (borrowed), else NULL */
    SSL *ssl;                 /* the connection's TLS session (owned while set) */
    char log[8192];           /* "REQ <head's first line> body=<n> [<body>] sum=<s>\n",
                               * "EOF <n>\n", "TLS new|resumed\n" */
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

/* The store's reads and writes, through TLS on a TLS store; like read(2) and send(2). */
static ssize_t
st_read(struct store *s, int fd, void *buf, size_t len)
{
    int n;

    if (s->ssl == NULL) {
        return read(fd, buf, len);
    }
    n = SSL_read(s->ssl, buf, (int)len);
    return n > 0 ? n : (SSL_get_error(s->ssl, n) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
}

static ssize_t
st_write(struct store *s, int fd, const void *buf, size_t len)
{
    if (s->ssl == NULL) {
        return send(fd, buf, len, MSG_NOSIGNAL);
    }
    return SSL_write(s->ssl, buf, (int)len) > 0 ? (ssize_t)len : -1;
}

static void
st_close(struct store *s, int fd)
{
    if (s->ssl != NULL) {
        (void)SSL_shutdown(s->ssl);
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    close(fd);
}

static void
read_request(struct store *s, int fd)
{
    char head[8192], body[4096], b[16384];
    size_t hl = 0;
    long cl = 0, got = 0;
    unsigned long sum = 0;
    char *p;

    for (;;) {
        if (hl >= sizeof(head) - 1 || st_read(s, fd, head + hl, 1) <= 0) {
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
    /* all of the body is read (its byte sum logged); the first 4 KiB are kept for the log */
    while (got < cl) {
        long want = cl - got < (long)sizeof(b) ? cl - got : (long)sizeof(b);
        ssize_t n = st_read(s, fd, b, (size_t)want), i;

        if (n <= 0) {
            break;
        }
        for (i = 0; i < n; i++) {
            sum += (unsigned char)b[i];
            if (got + i < (long)sizeof(body) - 1) {
                body[got + i] = b[i];
            }
        }
        got += n;
    }
    body[got < (long)sizeof(body) - 1 ? got : (long)sizeof(body) - 1] = '\0';
    log_add(s, "REQ %.*s body=%ld [%s] sum=%lu\n", (int)strcspn(head, "\r"), head, got, body, sum);
}

static void *
store_main(void *arg)
{
    struct store *s = arg;
    const struct step *st;
    int fd = -1, one = 1;

    for (st = s->steps; st->kind != END; st++) {
        switch (st->kind) {
        case ACCEPT:
        case ACCEPT_TCP:
            fd = accept(s->lfd, NULL, NULL);
            s->accepts++;
            /* as servers do: with Nagle, an answer after TLS's session tickets could wait
             * for an ACK and die in the send queue when a close resets the connection */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            if (s->tls != NULL && st->kind == ACCEPT) {
                s->ssl = SSL_new(s->tls);
                SSL_set_fd(s->ssl, fd);
                if (SSL_accept(s->ssl) != 1) {
                    log_add(s, "TLS failed\n");
                    ERR_clear_error();
                } else {
                    log_add(s, "TLS %s\n", SSL_session_reused(s->ssl) ? "resumed" : "new");
                }
            }
            break;
        case READ_REQ:
            read_request(s, fd);
            break;
        case WRITE:
            (void)st_write(s, fd, st->text, strlen(st->text));
            break;
        case WRITE_SLOW: {
            const char *p;

            for (p = st->text; *p; p++) {
                (void)st_write(s, fd, p, 1);
                usleep(200);
            }
            break;
        }
        case CLOSE:
            st_close(s, fd);
            fd = -1;
            break;
        case CUT:
            SSL_free(s->ssl); /* never shut down: no close_notify goes out */
            s->ssl = NULL;
            close(fd);
            fd = -1;
            break;
        case READ_EOF: {
            char b[4096];
            long total = 0;
            ssize_t n;

            while ((n = st_read(s, fd, b, sizeof(b))) > 0) {
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

            (void)st_write(s, fd, head, (size_t)len);
            while (off < sent) {
                long k, want = sent - off < (long)sizeof(b) ? sent - off : (long)sizeof(b);
                ssize_t w;

                for (k = 0; k < want; k++) {
                    b[k] = (char)pattern(off + k);
                }
                w = st_write(s, fd, b, (size_t)want);
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
        st_close(s, fd);
    }
    s->finished = 1;
    return NULL;
}

/* TLS: the store's context, or NULL for plain TCP. */
static void
store_start_tls(struct store *s, const struct step *steps, pthread_t *th, SSL_CTX *tls)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int one = 1;

    memset(s, 0, sizeof(*s));
    s->steps = steps;
    s->tls = tls;
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
store_start(struct store *s, const struct step *steps, pthread_t *th)
{
    store_start_tls(s, steps, th, NULL);
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
    int64_t gen_len;            /* up is NULL: read_body gives this many pattern() bytes */
    int64_t gen_pos;
    int check_pattern;          /* on_body counts bytes that are not pattern(offset) */
    size_t bad;                 /* those bytes */
    int pause_body_every;       /* on_body returns 1 before every Nth call (0: never) */
    int body_calls;
    int pause_body_once;        /* on_body returns 1 the first time */
    int pause_ms;               /* how long a pause lasts (0: 1 ms) */
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

    if (c->up == NULL && c->gen_len > 0) {
        size_t i;

        n = c->gen_len - c->gen_pos < (int64_t)max ? (size_t)(c->gen_len - c->gen_pos) : max;
        for (i = 0; i < n; i++) {
            buf[i] = (char)pattern((long)(c->gen_pos + (int64_t)i));
        }
        c->gen_pos += (int64_t)n;
        return n;
    }
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
    if (c->pause_body_once || (c->pause_body_every && ++c->body_calls % c->pause_body_every == 0)) {
        struct timeval tv = {0, 1000 * (c->pause_ms > 0 ? c->pause_ms : 1)};

        c->pause_body_once = 0;
        c->recv_paused = 1;
        event_add(c->resume_ev, &tv);
        return 1;
    }
    if (c->check_pattern) {
        size_t i;

        for (i = 0; i < len; i++) {
            c->bad += (unsigned char)data[i] != pattern((long)(c->body_len + i));
        }
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

/* https with CA_FILE and VERIFY when CA_FILE is set, else plain http */
static struct upstream *
make_upstream_tls(int port, const char *ca_file, int verify)
{
    char url[64];
    struct upstream_opts o = {url, ca_file, verify, 2000, 8};

    snprintf(url, sizeof(url), "%s://127.0.0.1:%d", ca_file ? "https" : "http", port);
    return upstream_create(evb, &o);
}

static struct upstream *
make_upstream(int port)
{
    return make_upstream_tls(port, NULL, 1);
}

/* ---- certificates ----------------------------------------------------------------------------- */

struct cert {
    EVP_PKEY *key;
    X509 *crt;
    char pem[64];               /* the certificate, as a CA bundle for the client */
};

/* A self-signed P-256 certificate for IP:127.0.0.1, written to a temporary PEM file. */
static void
cert_make(struct cert *c)
{
    static long serial = 1;
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    X509_NAME *name;
    FILE *f;
    int fd;

    c->key = EVP_EC_gen("P-256");
    c->crt = X509_new();
    X509_set_version(c->crt, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c->crt), serial++);
    X509_gmtime_adj(X509_getm_notBefore(c->crt), -60);
    X509_gmtime_adj(X509_getm_notAfter(c->crt), 3600);
    X509_set_pubkey(c->crt, c->key);
    name = X509_get_subject_name(c->crt);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"s3tee unit store",
                               -1, -1, 0);
    X509_set_issuer_name(c->crt, name);
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, c->crt, c->crt, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1");
    X509_add_ext(c->crt, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(c->crt, c->key, EVP_sha256());
    snprintf(c->pem, sizeof(c->pem), "/tmp/s3tee-unit-ca-XXXXXX");
    fd = mkstemp(c->pem);
    f = fdopen(fd, "w");
    PEM_write_X509(f, c->crt);
    fclose(f);
}

static void
cert_free(struct cert *c)
{
    unlink(c->pem);
    X509_free(c->crt);
    EVP_PKEY_free(c->key);
}

/* One https case: a certificate, a TLS store running STEPS with it, and `up` trusting it. */
struct tls_case {
    struct cert ca;
    SSL_CTX *sctx;
};

static void
tls_begin(struct tls_case *t, struct store *s, const struct step *steps, pthread_t *th)
{
    cert_make(&t->ca);
    t->sctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(t->sctx, t->ca.crt);
    SSL_CTX_use_PrivateKey(t->sctx, t->ca.key);
    store_start_tls(s, steps, th, t->sctx);
    up = make_upstream_tls(s->port, t->ca.pem, 1);
}

/* After store_stop(). */
static void
tls_end(struct tls_case *t)
{
    upstream_destroy(up);
    SSL_CTX_free(t->sctx);
    cert_free(&t->ca);
}

#define RESP_OK_HELLO "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\nhello"

int
main(void)
{
    struct store s;
    pthread_t th;

    if (getenv("UT_DEBUG")) log_set_level(LOG_DEBUG);
    signal(SIGPIPE, SIG_IGN); /* OpenSSL writes without MSG_NOSIGNAL (upstream.h) */
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
    {
        /* https: a GET arriving a byte per record and a PUT with pauses share one kept
         * connection; after the store closes it (close_notify), the next request goes on a
         * new connection that resumes the TLS session */
        static const struct step steps[] = {
            {ACCEPT, NULL},   {READ_REQ, NULL}, {WRITE_SLOW, RESP_OK_HELLO},
            {READ_REQ, NULL}, {WRITE, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
            {CLOSE, NULL},    {ACCEPT, NULL},   {READ_REQ, NULL},
            {WRITE, RESP_OK_HELLO}, {END, NULL}};
        struct caller c = {0}, p = {0}, c3 = {0};
        struct tls_case t;

        tls_begin(&t, &s, steps, &th);
        run(&c, "GET", "/b/k", -1);
        ok(c.done && c.err == NULL && c.status == 200 && c.body_len == 5 &&
               memcmp(c.body, "hello", 5) == 0,
           "https GET: 200, body whole from 1-byte records (err %s)", c.err ? c.err : "none");
        p.up = "the quick brown fox jumps over the lazy dog";
        p.up_pause_every = 4;
        run(&p, "PUT", "/b/k", (int64_t)strlen(p.up));
        ok(p.done && p.err == NULL && p.status == 200, "https PUT with pauses: 200");
        run(&c3, "GET", "/b/k3", -1);
        ok(c3.done && c3.err == NULL && c3.body_len == 5, "https: GET after the store closed the connection");
        store_stop(&s, th);
        ok(s.accepts == 2, "https: GET and PUT on one connection, the last GET on a second");
        ok(strstr(s.log, "REQ PUT /b/k HTTP/1.1 body=43 [the quick brown fox jumps over the lazy dog]"),
           "https: the store got the PUT's body whole (%s)", s.log);
        ok(strstr(s.log, "TLS new") != NULL && strstr(s.log, "TLS resumed") != NULL,
           "https: the second connection resumed the first one's session (%s)", s.log);
        tls_end(&t);
    }
    {
        /* https: a large body read with the caller pausing often (TLS holds decrypted bytes
         * epoll never reports: they must still come); a large PUT; then a GET on the same
         * connection */
        enum { N = 3 * 1024 * 1024 + 17, M = 5 * 1024 * 1024 + 3 };
        static const struct step steps[] = {
            {ACCEPT, NULL},   {READ_REQ, NULL}, {BIG, "3145745 3145745"},
            {READ_REQ, NULL}, {WRITE, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
            {READ_REQ, NULL}, {WRITE, RESP_OK_HELLO}, {END, NULL}};
        struct caller g = {.check_pattern = 1, .pause_body_every = 3}, p = {.gen_len = M}, c = {0};
        struct tls_case t;
        unsigned long sum = 0;
        char want[64];
        long i;

        for (i = 0; i < M; i++) {
            sum += pattern(i);
        }
        snprintf(want, sizeof(want), "body=%d [] sum=%lu", M, sum);
        tls_begin(&t, &s, steps, &th);
        run(&g, "GET", "/b/big", -1);
        ok(g.done && g.err == NULL && g.body_len == N && g.bad == 0,
           "https: 3 MiB GET with pauses arrives whole and in order (%zu, %zu wrong)", g.body_len, g.bad);
        run(&p, "PUT", "/b/big", M);
        ok(p.done && p.err == NULL && p.status == 200, "https: 5 MiB PUT: 200");
        run(&c, "GET", "/b/k", -1);
        ok(c.done && c.err == NULL && c.body_len == 5, "https: then a GET on the same connection");
        store_stop(&s, th);
        ok(strstr(s.log, want) != NULL, "https: the store got the PUT's bytes (%s) (%s)", want, s.log);
        ok(s.accepts == 1, "https: one connection for all three");
        tls_end(&t);
    }
    {
        /* https: a certificate the CA bundle does not vouch for is refused; without
         * verification the same store is used */
        static const struct step steps[] = {{ACCEPT, NULL}, {CLOSE, NULL},  {ACCEPT, NULL},
                                            {READ_REQ, NULL}, {WRITE, RESP_OK_HELLO}, {END, NULL}};
        struct caller c = {0}, c2 = {0};
        struct tls_case t;
        struct cert other;

        cert_make(&other);
        tls_begin(&t, &s, steps, &th);
        upstream_destroy(up);
        up = make_upstream_tls(s.port, other.pem, 1);
        run(&c, "GET", "/b/k", -1);
        ok(c.done && c.err == upstream_err_connect && c.status == 0,
           "https: an unknown certificate is upstream_err_connect");
        upstream_destroy(up);
        up = make_upstream_tls(s.port, other.pem, 0);
        run(&c2, "GET", "/b/k", -1);
        ok(c2.done && c2.err == NULL && c2.body_len == 5, "https: tls_verify 0 takes it");
        store_stop(&s, th);
        ok(strstr(s.log, "TLS failed") != NULL && strstr(s.log, "REQ GET /b/k") != NULL,
           "https: no request on the refused connection, one on the other (%s)", s.log);
        tls_end(&t);
        cert_free(&other);
    }
    {
        /* https, a body framed by the close: with close_notify it is whole; a bare TCP end
         * may be an attacker cutting it short and is an error (RFC 9112 9.8); a Content-Length
         * body that arrived whole before a bare end is whole */
        static const struct step steps[] = {
            {ACCEPT, NULL}, {READ_REQ, NULL}, {WRITE, "HTTP/1.1 200 OK\r\n\r\nhello"}, {CLOSE, NULL},
            {ACCEPT, NULL}, {READ_REQ, NULL}, {WRITE, "HTTP/1.1 200 OK\r\n\r\nhel"},   {CUT, NULL},
            {ACCEPT, NULL}, {READ_REQ, NULL}, {WRITE, RESP_OK_HELLO},                 {CUT, NULL},
            {END, NULL}};
        struct caller c = {0}, c2 = {0}, c3 = {0};
        struct tls_case t;

        tls_begin(&t, &s, steps, &th);
        run(&c, "GET", "/b/k", -1);
        ok(c.done && c.err == NULL && c.body_len == 5 && memcmp(c.body, "hello", 5) == 0,
           "https: a body ended by close_notify is whole (err %s)", c.err ? c.err : "none");
        run(&c2, "GET", "/b/k", -1);
        ok(c2.done && c2.err == upstream_err_io,
           "https: a body ended by a bare TCP close is upstream_err_io (err %s)", c2.err ? c2.err : "none");
        run(&c3, "GET", "/b/k", -1);
        ok(c3.done && c3.err == NULL && c3.body_len == 5,
           "https: a Content-Length body whole before a bare close is whole (err %s)",
           c3.err ? c3.err : "none");
        store_stop(&s, th);
        ok(s.accepts == 3, "https: three connections (%d)", s.accepts);
        tls_end(&t);
    }
    {
        /* an early answer while a large body is still going out, then a close with the body
         * unread (a reset): plain and https both deliver the answer, not a broken write */
        static const struct step steps[] = {
            {ACCEPT, NULL},
            {WRITE, "HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\nConnection: close\r\n\r\ndenied!"},
            {CLOSE, NULL},
            {END, NULL}};
        struct caller c = {.gen_len = 8 * 1024 * 1024}, c2 = {.gen_len = 8 * 1024 * 1024};
        struct tls_case t;

        store_start(&s, steps, &th);
        up = make_upstream(s.port);
        run(&c, "PUT", "/b/k", c.gen_len);
        ok(c.done && c.err == NULL && c.status == 403 && c.body_len == 7,
           "early answer to a large PUT, then a reset: 403 delivered (err %s)", c.err ? c.err : "none");
        store_stop(&s, th);
        upstream_destroy(up);
        tls_begin(&t, &s, steps, &th);
        run(&c2, "PUT", "/b/k", c2.gen_len);
        ok(c2.done && c2.err == NULL && c2.status == 403 && c2.body_len == 7,
           "https: early answer to a large PUT, then a reset: 403 delivered (err %s)", c2.err ? c2.err : "none");
        store_stop(&s, th);
        tls_end(&t);
    }
    {
        /* https: the caller pauses at the first body bytes until the whole answer has
         * arrived, so reading stops with IN full; the last records may then sit in TLS's
         * read-ahead with the socket empty (the store keeps the connection open and silent):
         * the resume must read them. Several tail sizes, so that some leave all of it in TLS. */
        static const char *sizes[] = {"524288 524288", "524280 524280", "524250 524250",
                                      "524200 524200", "540672 540672"};
        size_t i, whole = 0;

        for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            const struct step steps[] = {{ACCEPT, NULL}, {READ_REQ, NULL}, {BIG, sizes[i]},
                                         {READ_EOF, NULL}, {END, NULL}};
            struct caller c = {.check_pattern = 1, .pause_body_once = 1, .pause_ms = 100};
            struct tls_case t;

            tls_begin(&t, &s, steps, &th);
            run(&c, "GET", "/b/big", -1);
            whole += c.done && c.err == NULL && c.bad == 0 && c.body_len == (size_t)atol(sizes[i]);
            if (!c.done) {
                upstream_abort(c.x); /* stalled: the store's READ_EOF needs the close */
            }
            upstream_destroy(up); /* closes the kept connection: the store's READ_EOF ends */
            up = NULL;
            store_stop(&s, th);
            tls_end(&t);
        }
        ok(whole == sizeof(sizes) / sizeof(sizes[0]),
           "https: bodies whose tail TLS read ahead come whole after a pause (%zu of 5)", whole);
    }
    {
        /* https: a server that accepts and never answers the handshake: the connect timeout
         * covers the handshake */
        static const struct step steps[] = {{ACCEPT_TCP, NULL}, {READ_EOF, NULL}, {END, NULL}};
        struct caller c = {0};
        struct tls_case t;

        tls_begin(&t, &s, steps, &th);
        run(&c, "GET", "/b/k", -1);
        ok(c.done && c.err == upstream_err_timeout, "https: a silent handshake is upstream_err_timeout");
        store_stop(&s, th);
        ok(strstr(s.log, "EOF ") != NULL && strstr(s.log, "EOF 0") == NULL,
           "https: the store saw a ClientHello, then the close (%s)", s.log);
        tls_end(&t);
    }
    event_base_free(evb);
    return done_testing();
}
