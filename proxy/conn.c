/*
 * conn.c - accept, TLS handshake, protocol choice, and deferred close.
 *
 *   accept --tls--> handshake --ALPN h2--> h2_conn_start
 *      |                 +-----otherwise--> h1_conn_start
 *      +--plain--> sniff first bytes: h2c preface -> h2, else -> h1
 *
 * conn_close() only marks the connection; the reaper frees it from a fresh event-loop
 * turn, because the caller is usually deep inside a callback of the same connection.
 */
#include "proxy/conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "proxy/worker.h"

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void
format_peer(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        port = ntohs(s4->sin_port);
        snprintf(out, len, "%s:%d", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        port = ntohs(s6->sin6_port);
        snprintf(out, len, "[%s]:%d", ip, port);
    } else {
        snprintf(out, len, "unix");
    }
}

static void
choose_protocol(struct conn *c, int h2)
{
    if (c->sniff_timer != NULL) {
        event_free(c->sniff_timer);
        c->sniff_timer = NULL;
    }
    if (h2) {
        if (h2_conn_start(c) != 0) {
            conn_close(c);
        }
    } else if (h1_conn_start(c) != 0) {
        conn_close(c);
    }
}

static void
sniff_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in), cmp = n < sizeof(h2_preface) - 1 ? n : sizeof(h2_preface) - 1;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)cmp);

    if (p != NULL && memcmp(p, h2_preface, cmp) != 0) {
        choose_protocol(c, 0);
    } else if (cmp == sizeof(h2_preface) - 1) {
        choose_protocol(c, 1);
    }
    /* else: a prefix of the preface so far; wait for more */
}

static void
sniff_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;

    if (what & BEV_EVENT_CONNECTED) {
        /* TLS handshake done: ALPN decides */
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        const unsigned char *alpn = NULL;
        unsigned int alen = 0;

        SSL_get0_alpn_selected(ssl, &alpn, &alen);
        choose_protocol(c, alen == 2 && memcmp(alpn, "h2", 2) == 0);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        unsigned long e = bufferevent_get_openssl_error(bev);

        if (e != 0) {
            char buf[256];

            ERR_error_string_n(e, buf, sizeof(buf));
            log_info("conn", "TLS handshake with %s failed: %s", c->peer, buf);
        }
    }
    conn_close(c);
}

static void
on_sniff_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    log_info("conn", "client %s sent nothing usable in time", c->peer);
    conn_close(c);
}

void
conn_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, int tls)
{
    struct conn *c;
    struct timeval tv;
    int one = 1;

    if (w->draining || w->nconns >= (w->cf->max_connections + w->srv->nworkers - 1) / w->srv->nworkers) {
        evutil_closesocket(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c = xcalloc(1, sizeof(*c));
    c->w = w;
    c->tls = tls;
    format_peer(sa, c->peer, sizeof(c->peer));
    if (tls) {
        SSL *ssl = SSL_new(w->srv->ssl_ctx);

        c->bev = bufferevent_openssl_socket_new(w->evb, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
        c->bev = bufferevent_socket_new(w->evb, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (c->bev == NULL) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    /* libevent moves 4 KiB per read and 16 KiB per write by default: a 1 GiB upload was
     * 262,144 readv calls. Large objects want large single moves. */
    bufferevent_set_max_single_read(c->bev, 256 * 1024);
    bufferevent_set_max_single_write(c->bev, 256 * 1024);
    worker_conn_added(w, c);
    bufferevent_setcb(c->bev, tls ? NULL : sniff_read_cb, NULL, sniff_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->sniff_timer = evtimer_new(w->evb, on_sniff_timeout, c);
    tv.tv_sec = w->cf->client_header_timeout_ms / 1000;
    tv.tv_usec = (w->cf->client_header_timeout_ms % 1000) * 1000;
    evtimer_add(c->sniff_timer, &tv);
}

static void
reap(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    h1_conn_free(c->h1);
    h2_conn_free(c->h2);
    if (c->sniff_timer != NULL) {
        event_free(c->sniff_timer);
    }
    bufferevent_free(c->bev);
    worker_conn_removed(c->w, c);
    free(c);
}

void
conn_close(struct conn *c)
{
    static const struct timeval now = {0, 0};

    if (c->closing) {
        return;
    }
    c->closing = 1;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    if (c->sniff_timer != NULL) {
        evtimer_del(c->sniff_timer);
    }
    event_base_once(c->w->evb, -1, EV_TIMEOUT, reap, c, &now);
}

void
conn_drain(struct conn *c)
{
    if (c->closing) {
        return;
    }
    switch (c->proto) {
    case CONN_H1:
        h1_conn_drain(c);
        break;
    case CONN_H2:
        h2_conn_drain(c);
        break;
    default:
        conn_close(c);
    }
}

int
conn_push(struct conn *c)
{
    struct bufferevent *bev = c->bev;
    struct evbuffer *out = bufferevent_get_output(bev);
    int n, err;

    if (c->tls || (bufferevent_get_enabled(bev) & EV_WRITE)) {
        return evbuffer_get_length(out) == 0;
    }
    if (evbuffer_get_length(out) == 0) {
        return 1;
    }
    /* a socket bufferevent keeps its output's start frozen so that only it drains it */
    evbuffer_unfreeze(out, 1);
    n = evbuffer_write(out, bufferevent_getfd(bev));
    err = errno;
    evbuffer_freeze(out, 1);
    if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
        bufferevent_enable(bev, EV_WRITE); /* its write fails the same way: the event cb */
        return 0;
    }
    if (evbuffer_get_length(out) > 0) {
        bufferevent_enable(bev, EV_WRITE);
        return 0;
    }
    return 1;
}

void
conn_write_idle(struct conn *c)
{
    if (!c->tls && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        bufferevent_disable(c->bev, EV_WRITE);
    }
}

void
conn_direct_writes(struct conn *c)
{
    if (!c->tls) {
        bufferevent_disable(c->bev, EV_WRITE);
    }
}
