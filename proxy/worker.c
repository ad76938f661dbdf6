/*
 * worker.c - worker threads: each runs its own event loop with its own SO_REUSEPORT
 * listeners, so the kernel spreads connections over the cores and no lock sits on the
 * data path. The main thread talks to workers only through event_active() on reload_ev
 * and stop_ev (libevent is set up for pthreads in main.c).
 */
#include "proxy/worker.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "proxy/conn.h"
#include "common/upstream.h"
#include "queue/queue.h"

#define DRAIN_TIMEOUT_S 30
/* After accept() failed for want of descriptors or memory: the pending connection keeps the
 * listener readable, so retrying at once would spin. Pause this long, then try again. */
#define ACCEPT_PAUSE_MS 100
/* Descriptors a process needs besides client connections: listeners, store and Redis
 * connections (upstream_max_connections per worker is added), logs, the event loops. */
#define FD_RESERVE 64

struct listen_arg {
    struct worker *w;              /* owner */
    int tls;                       /* listen_tls socket */
    struct evconnlistener *l;      /* the listener (owned by w->listeners) */
    struct event *pause_ev;        /* re-enables l after ACCEPT_PAUSE_MS (owned) */
    unsigned failing : 1;          /* accept is failing; logged once until it works again */
};

struct proxy_conf *
server_conf(struct server *srv)
{
    struct proxy_conf *cf;

    pthread_mutex_lock(&srv->lock);
    cf = proxy_conf_ref(srv->cf);
    pthread_mutex_unlock(&srv->lock);
    return cf;
}

void
worker_request_id(struct worker *w, char out[24])
{
    snprintf(out, 24, "%08X%02X%llX", w->srv->boot_id, (unsigned)w->id & 0xff,
             (unsigned long long)++w->next_req_id);
}

void
worker_conn_added(struct worker *w, struct conn *c)
{
    TAILQ_INSERT_TAIL(&w->conns, c, link);
    w->nconns++;
}

void
worker_conn_removed(struct worker *w, struct conn *c)
{
    TAILQ_REMOVE(&w->conns, c, link);
    w->nconns--;
    if (w->draining && w->nconns == 0) {
        event_base_loopexit(w->evb, NULL);
    }
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct listen_arg *la = arg;

    (void)l;
    (void)salen;
    if (la->failing) {
        la->failing = 0;
        log_info("worker", "worker %d: accepting connections again", la->w->id);
    }
    conn_accept(la->w, fd, sa, la->tls);
}

static void
on_accept_pause_end(evutil_socket_t fd, short what, void *arg)
{
    struct listen_arg *la = arg;

    (void)fd;
    (void)what;
    if (!la->w->draining) {
        evconnlistener_enable(la->l);
    }
}

static void
on_accept_error(struct evconnlistener *l, void *arg)
{
    struct listen_arg *la = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};

    /* EMFILE and friends: keep serving the connections we have; new ones wait in the
     * kernel's backlog while we pause (one log line per episode, not one per retry) */
    if (!la->failing) {
        la->failing = 1;
        log_warn("worker", "worker %d: accept failed: %s; pausing accepts for %d ms at a time "
                           "(raise ulimit -n or lower max_connections)",
                 la->w->id, evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS);
    }
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        evconnlistener_disable(l);
        evtimer_add(la->pause_ev, &tv);
    }
}

static void
on_reload(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct proxy_conf *old = w->cf;

    (void)fd;
    (void)what;
    w->cf = server_conf(w->srv);
    proxy_conf_unref(old);
}

static void
on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    (void)fd;
    (void)what;
    log_warn("worker", "worker %d: %d connections still busy after %ds; closing them", w->id,
             w->nconns, DRAIN_TIMEOUT_S);
    event_base_loopexit(w->evb, NULL);
}

static void
free_listeners(struct worker *w)
{
    size_t i;

    for (i = 0; i < w->nlisteners; i++) {
        struct listen_arg *la = w->listen_args[i];

        evconnlistener_free(w->listeners[i]);
        event_free(la->pause_ev);
        free(la);
    }
    free(w->listeners);
    free(w->listen_args);
    w->listeners = NULL;
    w->listen_args = NULL;
    w->nlisteners = 0;
}

static void
on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct conn *c, *next;
    struct timeval tv = {DRAIN_TIMEOUT_S, 0};

    (void)fd;
    (void)what;
    if (w->draining) {
        return;
    }
    w->draining = 1;
    free_listeners(w);
    for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
        next = TAILQ_NEXT(c, link);
        conn_drain(c);
    }
    if (w->nconns == 0) {
        event_base_loopexit(w->evb, NULL);
        return;
    }
    w->drain_timer = evtimer_new(w->evb, on_drain_timeout, w);
    evtimer_add(w->drain_timer, &tv);
}

static int
add_listener(struct worker *w, const struct proxy_listen *pl, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    struct evconnlistener *l;
    struct listen_arg *la;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    rc = getaddrinfo(pl->host, pl->port, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve listen address %s:%s: %s", pl->host, pl->port,
                 gai_strerror(rc));
        return -1;
    }
    la = xcalloc(1, sizeof(*la));
    la->w = w;
    la->tls = pl->tls;
    l = evconnlistener_new_bind(w->evb, on_accept, la,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                    LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC,
                                1024, res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (l == NULL) {
        snprintf(err, errlen, "cannot listen on %s:%s: %s", pl->host, pl->port,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        free(la);
        return -1;
    }
    evconnlistener_set_error_cb(l, on_accept_error);
    la->l = l;
    la->pause_ev = evtimer_new(w->evb, on_accept_pause_end, la);
    w->listen_args[w->nlisteners] = la;
    w->listeners[w->nlisteners++] = l;
    return 0;
}

/*
 * Raises the soft RLIMIT_NOFILE towards what max_connections needs (up to the hard limit),
 * as nginx's worker_rlimit_nofile and Redis's maxclients do; says so when it cannot, since
 * the accepts past the limit would then fail (and pause, see on_accept_error). Process-wide:
 * the first worker_init() does it.
 */
static void
raise_fd_limit(const struct proxy_conf *cf, int nworkers)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)cf->max_connections + FD_RESERVE +
                  (rlim_t)nworkers * (rlim_t)(cf->upstream_max_connections + 4);

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need) {
        return;
    }
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        log_warn("worker", "max_connections %d needs about %llu file descriptors but the hard "
                           "limit is %llu: connections past it are refused (raise ulimit -Hn)",
                 cf->max_connections, (unsigned long long)need,
                 (unsigned long long)rl.rlim_max);
        need = rl.rlim_max;
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        log_warn("worker", "cannot raise the file descriptor limit to %llu: %s",
                 (unsigned long long)need, strerror(errno));
    }
}

int
worker_init(struct worker *w, struct server *srv, int id, char *err, size_t errlen)
{
    size_t i;

    memset(w, 0, sizeof(*w));
    w->id = id;
    w->srv = srv;
    w->evb = event_base_new();
    if (w->evb == NULL) {
        snprintf(err, errlen, "cannot create an event loop");
        return -1;
    }
    w->cf = server_conf(srv);
    if (id == 0) {
        raise_fd_limit(w->cf, srv->nworkers);
    }
    TAILQ_INIT(&w->conns);
    sigv4_key_cache_init(&w->keys);
    w->listeners = xcalloc(w->cf->nlistens ? w->cf->nlistens : 1, sizeof(*w->listeners));
    w->listen_args = xcalloc(w->cf->nlistens ? w->cf->nlistens : 1, sizeof(*w->listen_args));
    for (i = 0; i < w->cf->nlistens; i++) {
        if (add_listener(w, &w->cf->listens[i], err, errlen) != 0) {
            return -1;
        }
    }
    {
        struct upstream_opts uo = {
            .base_url = w->cf->upstream,
            .ca_file = w->cf->upstream_ca_file,
            .tls_verify = w->cf->upstream_tls_verify,
            .connect_timeout_ms = w->cf->upstream_connect_timeout_ms,
            .max_connections = w->cf->upstream_max_connections,
        };

        w->up = upstream_create(w->evb, &uo);
    }
    if (w->cf->site_id != NULL) {
        struct queue_opts qo = {
            .host = w->cf->redis_host,
            .port = w->cf->redis_port,
            .site_id = w->cf->site_id,
            .command_timeout_ms = w->cf->redis_command_timeout_ms,
            .reconnect_ms = 500,
        };

        w->q = queue_create(w->evb, &qo);
    }
    w->reload_ev = event_new(w->evb, -1, 0, on_reload, w);
    w->stop_ev = event_new(w->evb, -1, 0, on_stop, w);
    return 0;
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;

    event_base_dispatch(w->evb);
    return NULL;
}

int
worker_start(struct worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w);
}

void
worker_deinit(struct worker *w)
{
    struct conn *c, *next;
    int i;

    if (w->evb == NULL) {
        return;
    }
    /* connections left after the drain deadline: close them and let the loop settle the
     * aborted store transfers */
    for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
        next = TAILQ_NEXT(c, link);
        if (!c->closing) {
            conn_drain(c);
            conn_close(c);
        }
    }
    for (i = 0; i < 8; i++) {
        event_base_loop(w->evb, EVLOOP_NONBLOCK);
    }
    free_listeners(w);
    upstream_destroy(w->up);
    if (w->q != NULL) {
        queue_destroy(w->q);
        event_base_loop(w->evb, EVLOOP_NONBLOCK);
    }
    event_base_loop(w->evb, EVLOOP_NONBLOCK);
    if (w->drain_timer != NULL) {
        event_free(w->drain_timer);
    }
    if (w->reload_ev != NULL) {
        event_free(w->reload_ev);
    }
    if (w->stop_ev != NULL) {
        event_free(w->stop_ev);
    }
    sigv4_key_cache_deinit(&w->keys);
    proxy_conf_unref(w->cf);
    event_base_free(w->evb);
    w->evb = NULL;
}
