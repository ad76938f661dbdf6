/*
 * upstream_curl.c - the https transport of upstream.h: libcurl multi on a libevent loop.
 *
 * curl tells us which sockets to watch (sock_cb) and when to wake it (timer_cb); libevent
 * tells curl when a socket is ready (on_socket) or the timer fired (on_timer). Finished
 * transfers are collected in check_done() after every curl_multi_socket_action() and handed
 * to upstream_xfer_finish(). A transfer aborted from inside one of its own callbacks cannot
 * be removed from the multi there; upstream.c's reap_ev releases it later.
 */
#include "common/upstream_impl.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/xalloc.h"

struct sock_watch {
    struct event *ev;                 /* read/write interest for one curl socket (owned) */
};

static void check_done(struct upstream *u);

static void
on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *u = arg;
    int running, mask = 0;

    if (what & EV_READ) {
        mask |= CURL_CSELECT_IN;
    }
    if (what & EV_WRITE) {
        mask |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(u->multi, fd, mask, &running);
    check_done(u);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *u = arg;
    int running;

    (void)fd;
    (void)what;
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(u);
}

static int
sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct upstream *u = userp;
    struct sock_watch *sw = socketp;
    short kind;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (sw != NULL) {
            event_free(sw->ev);
            free(sw);
            curl_multi_assign(u->multi, s, NULL);
        }
        return 0;
    }
    kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (sw == NULL) {
        sw = xcalloc(1, sizeof(*sw));
        curl_multi_assign(u->multi, s, sw);
    } else {
        event_free(sw->ev);
    }
    sw->ev = event_new(u->evb, s, kind, on_socket, u);
    event_add(sw->ev, NULL);
    return 0;
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct upstream *u = userp;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(u->timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(u->timer, &tv);
    return 0;
}

static const char *
classify(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        return upstream_err_connect;
    case CURLE_OPERATION_TIMEDOUT:
        return upstream_err_timeout;
    default:
        return upstream_err_io;
    }
}

static void
check_done(struct upstream *u)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(u->multi, &left)) != NULL) {
        struct upstream_xfer *x = NULL;
        const char *err;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x->aborted) {
            continue; /* reap_ev releases it */
        }
        err = msg->data.result == CURLE_OK ? NULL : classify(msg->data.result);
        if (err != NULL) {
            log_debug("upstream", "transfer failed: %s", curl_easy_strerror(msg->data.result));
        }
        upstream_xfer_finish(x, err);
    }
}

static size_t
read_cb(char *buf, size_t size, size_t nitems, void *userp)
{
    struct upstream_xfer *x = userp;
    size_t n;

    if (x->aborted) {
        return CURL_READFUNC_ABORT;
    }
    n = x->ops->read_body(x->arg, buf, size * nitems);
    if (x->aborted) {
        return CURL_READFUNC_ABORT;
    }
    if (n == UPSTREAM_PAUSE) {
        x->send_paused = 1;
        return CURL_READFUNC_PAUSE;
    }
    return n;
}

static size_t
header_cb(char *buf, size_t size, size_t nitems, void *userp)
{
    struct upstream_xfer *x = userp;
    size_t len = size * nitems;
    struct slice line = slice_make(buf, len);
    long colon;

    if (x->aborted) {
        return 0;
    }
    while (line.len && (line.ptr[line.len - 1] == '\n' || line.ptr[line.len - 1] == '\r')) {
        line.len--;
    }
    if (slice_starts_with(line, SLICE_LIT("HTTP/"))) {
        long sp = slice_index(line, ' ');

        x->status = sp > 0 && line.len >= (size_t)sp + 4 ? atoi(line.ptr + sp + 1) : 502;
        return len;
    }
    if (line.len == 0) {
        if (x->status >= 200 && !x->head_done) {
            x->head_done = 1;
            x->first_byte_us = upstream_now_us() - x->start_us;
            x->ops->on_head(x->arg, x->status);
        }
        return x->aborted ? 0 : len;
    }
    if (x->status >= 200 && (colon = slice_index(line, ':')) > 0) {
        x->ops->on_header(x->arg, slice_make(line.ptr, (size_t)colon),
                          slice_trim(slice_make(line.ptr + colon + 1, line.len - (size_t)colon - 1)));
    }
    return x->aborted ? 0 : len;
}

static size_t
write_cb(char *buf, size_t size, size_t nitems, void *userp)
{
    struct upstream_xfer *x = userp;
    size_t len = size * nitems;

    if (x->aborted) {
        return 0;
    }
    if (x->ops->on_body(x->arg, buf, len)) {
        if (x->aborted) {
            return 0;
        }
        x->recv_paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    return x->aborted ? 0 : len;
}

void
upstream_curl_init(struct upstream *u, const struct upstream_opts *o)
{
    size_t n;

    u->multi = curl_multi_init();
    u->timer = evtimer_new(u->evb, on_timer, u);
    u->base_url = xstrdup(o->base_url);
    n = strlen(u->base_url);
    while (n && u->base_url[n - 1] == '/') {
        u->base_url[--n] = '\0';
    }
    u->ca_file = o->ca_file ? xstrdup(o->ca_file) : NULL;
    u->tls_verify = o->tls_verify;
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, (long)o->max_connections);
}

void
upstream_curl_deinit(struct upstream *u)
{
    while (u->nspare > 0) {
        curl_easy_cleanup(u->spare[--u->nspare]);
    }
    curl_multi_cleanup(u->multi);
    event_free(u->timer);
    free(u->base_url);
    free(u->ca_file);
}

void
upstream_curl_release(struct upstream_xfer *x)
{
    struct upstream *u = x->u;

    if (x->easy == NULL) {
        return;
    }
    curl_multi_remove_handle(u->multi, x->easy);
    if (u->nspare < UPSTREAM_SPARE_HANDLES) {
        curl_easy_reset(x->easy);
        u->spare[u->nspare++] = x->easy;
    } else {
        curl_easy_cleanup(x->easy);
    }
    x->easy = NULL;
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
}

int
upstream_curl_start(struct upstream_xfer *x, const struct upstream_xfer_args *a)
{
    struct upstream *u = x->u;
    size_t ulen = strlen(u->base_url) + strlen(a->path_query) + 1;
    char *url = xmalloc(ulen);
    size_t i;
    CURL *e;

    snprintf(url, ulen, "%s%s", u->base_url, a->path_query);
    e = u->nspare > 0 ? u->spare[--u->nspare] : curl_easy_init();
    if (e == NULL) {
        free(url);
        return -1;
    }
    for (i = 0; a->headers[i] != NULL; i++) {
        x->hdrs = curl_slist_append(x->hdrs, a->headers[i]);
    }
    /* curl's own defaults would be unsigned extra headers, and Expect would add a round trip */
    x->hdrs = curl_slist_append(x->hdrs, "Expect:");
    x->hdrs = curl_slist_append(x->hdrs, "Accept:");
    curl_easy_setopt(e, CURLOPT_URL, url);
    free(url);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)u->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, u->tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, u->tls_verify ? 2L : 0L);
    if (u->ca_file != NULL) {
        curl_easy_setopt(e, CURLOPT_CAINFO, u->ca_file);
    }
    if (strcmp(a->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(a->method, "GET") != 0 || a->body_length >= 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, a->method);
    }
    if (a->body_length >= 0 && strcmp(a->method, "HEAD") != 0) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)a->body_length);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(e, CURLOPT_READDATA, x);
    }
    if (curl_multi_add_handle(u->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        curl_slist_free_all(x->hdrs);
        x->hdrs = NULL;
        return -1;
    }
    x->easy = e;
    return 0;
}

void
upstream_curl_pause(struct upstream_xfer *x)
{
    int mask = (x->send_paused ? CURLPAUSE_SEND : 0) | (x->recv_paused ? CURLPAUSE_RECV : 0);

    /* may call read/write callbacks right away; they see the flags already cleared */
    curl_easy_pause(x->easy, mask);
}
