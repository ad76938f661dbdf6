/* peerop - one request to several peer sites at once (see peerop.h). */
#include "proxy/peerop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/pool.h"
#include "common/upstream.h"
#include "common/xalloc.h"
#include "proxy/upsign.h"
#include "signing/creds.h"

/* Answers to bucket operations are short XML; more than this is not read. */
#define PEEROP_MAX_ANSWER (64 * 1024)

/*
 * One peer's request. States: running (x != NULL) -> finished (done = 1, res filled).
 */
struct peer_call {
    struct peerop *op;          /* owner */
    struct upstream *up;        /* connection pool to that peer (owned) */
    struct upstream_xfer *x;    /* live transfer, NULL once finished */
    size_t body_sent;           /* request body bytes handed to the transfer */
    struct evbuffer *answer;    /* response body, first PEEROP_MAX_ANSWER bytes (owned) */
    struct peerop_result res;   /* its outcome */
    int done;
};

/*
 * The operation: running until every call finished or the deadline; then DONE is called
 * from a fresh loop turn (never from inside a transfer callback, because the upstreams are
 * destroyed right after it).
 */
struct peerop {
    struct pool pool;           /* copies of the arguments (owned) */
    struct peer_call *calls;    /* one per site (owned) */
    struct peerop_result *results; /* handed to DONE (owned) */
    size_t ncalls, nrunning;
    struct slice body;          /* request body (pool) */
    struct event *deadline;     /* whole-operation timeout (owned) */
    struct event *finish;       /* runs DONE in its own loop turn (owned) */
    peerop_done_fn done;
    void *arg;
};

static void
call_finish(struct peer_call *c, const char *errstr)
{
    struct peerop *op = c->op;

    if (c->done) {
        return;
    }
    c->done = 1;
    c->x = NULL;
    c->res.errstr = errstr;
    if (errstr == NULL && c->answer != NULL) {
        size_t n = evbuffer_get_length(c->answer);
        const char *xml = n ? (const char *)evbuffer_pullup(c->answer, (ev_ssize_t)n) : "";
        const char *at;

        if ((at = memmem(xml, n, "<Code>", 6)) != NULL) {
            struct slice rest = slice_make(at + 6, n - (size_t)(at + 6 - xml));
            long end = slice_index(rest, '<');

            if (end > 0 && (size_t)end < sizeof(c->res.code)) {
                memcpy(c->res.code, rest.ptr, (size_t)end);
                c->res.code[end] = '\0';
            }
        }
        if ((at = memmem(xml, n, "<KeyCount>", 10)) != NULL) {
            /* the answer is a pulled-up evbuffer, not NUL-terminated: copy the digits */
            char digits[24];
            size_t k = 0, off = (size_t)(at + 10 - xml);

            while (off + k < n && k + 1 < sizeof(digits) && xml[off + k] >= '0' && xml[off + k] <= '9') {
                digits[k] = xml[off + k];
                k++;
            }
            digits[k] = '\0';
            c->res.key_count = k ? strtol(digits, NULL, 10) : -1;
        }
    }
    if (--op->nrunning == 0) {
        evtimer_del(op->deadline);
        event_active(op->finish, 0, 0);
    }
}

static size_t
call_read_body(void *arg, char *buf, size_t max)
{
    struct peer_call *c = arg;
    size_t left = c->op->body.len - c->body_sent;

    if (left > max) {
        left = max;
    }
    memcpy(buf, c->op->body.ptr + c->body_sent, left);
    c->body_sent += left;
    return left;
}

static void
call_on_header(void *arg, struct slice name, struct slice value)
{
    (void)arg;
    (void)name;
    (void)value;
}

static void
call_on_head(void *arg, int status)
{
    struct peer_call *c = arg;

    c->res.status = status;
}

static int
call_on_body(void *arg, const char *data, size_t len)
{
    struct peer_call *c = arg;
    size_t have = evbuffer_get_length(c->answer);

    if (have < PEEROP_MAX_ANSWER) {
        evbuffer_add(c->answer, data, len < PEEROP_MAX_ANSWER - have ? len : PEEROP_MAX_ANSWER - have);
    }
    return 0;
}

static void
call_on_done(void *arg, const char *errstr)
{
    struct peer_call *c = arg;

    if (errstr == upstream_err_connect) {
        call_finish(c, "cannot connect");
    } else if (errstr == upstream_err_timeout) {
        call_finish(c, "connect timed out");
    } else if (errstr != NULL) {
        call_finish(c, "connection broke");
    } else {
        call_finish(c, NULL);
    }
}

static const struct upstream_xfer_ops call_ops = {
    .read_body = call_read_body,
    .on_header = call_on_header,
    .on_head = call_on_head,
    .on_body = call_on_body,
    .on_done = call_on_done,
};

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct peerop *op = arg;
    size_t i;

    (void)fd;
    (void)what;
    for (i = 0; i < op->ncalls; i++) {
        struct peer_call *c = &op->calls[i];

        if (!c->done) {
            upstream_abort(c->x);
            c->res.status = 0;
            call_finish(c, "no answer in bucket_op_timeout");
        }
    }
}

static void peerop_free(struct peerop *op);

static void
on_finish(evutil_socket_t fd, short what, void *arg)
{
    struct peerop *op = arg;
    size_t i;

    (void)fd;
    (void)what;
    for (i = 0; i < op->ncalls; i++) {
        op->results[i] = op->calls[i].res;
    }
    /* DONE may start anything, but not touch OP again: free first, results outlive it */
    {
        peerop_done_fn done = op->done;
        void *arg2 = op->arg;
        struct peerop_result *res = op->results;
        size_t n = op->ncalls;

        op->results = NULL;
        peerop_free(op);
        done(arg2, res, n);
        free(res);
    }
}

static void
peerop_free(struct peerop *op)
{
    size_t i;

    for (i = 0; i < op->ncalls; i++) {
        struct peer_call *c = &op->calls[i];

        if (c->x != NULL) {
            upstream_abort(c->x);
        }
        if (c->up != NULL) {
            upstream_destroy(c->up);
        }
        if (c->answer != NULL) {
            evbuffer_free(c->answer);
        }
    }
    if (op->deadline != NULL) {
        event_free(op->deadline);
    }
    if (op->finish != NULL) {
        event_free(op->finish);
    }
    free(op->calls);
    free(op->results);
    pool_deinit(&op->pool);
    free(op);
}

static const struct proxy_site *
find_site(const struct proxy_conf *cf, const char *id)
{
    size_t i;

    for (i = 0; i < cf->nsites; i++) {
        if (strcmp(cf->sites[i].id, id) == 0) {
            return &cf->sites[i];
        }
    }
    return NULL;
}

/* Builds and starts the request at one site; -1 with ERR filled when it cannot. */
static int
call_start(struct peerop *op, struct peer_call *c, struct event_base *evb,
           struct sigv4_key_cache *keys, const struct proxy_conf *cf, const char *site_id,
           const struct peerop_args *a, const char *payload, char *err, size_t errlen)
{
    const struct proxy_site *site = find_site(cf, site_id);
    const struct creds_entry *key = creds_find_peer(cf->creds, slice_cstr(site_id));
    struct upstream_opts uo;
    struct upstream_xfer_args xa;
    struct upsign_target t;
    struct sigv4_header *sh;
    const char **lines;
    const char *errstr = NULL;
    size_t i;

    c->op = op;
    c->res.site = site ? site->id : site_id;
    c->res.key_count = -1;
    if (site == NULL || key == NULL) {
        snprintf(err, errlen, "site %s: %s", site_id,
                 site == NULL ? "not in the site list" : "no 'peer' key for it in the credentials file");
        return -1;
    }
    memset(&uo, 0, sizeof(uo));
    uo.base_url = site->url;
    uo.ca_file = cf->site_ca_file;
    uo.tls_verify = 1;
    uo.connect_timeout_ms = cf->upstream_connect_timeout_ms;
    uo.max_connections = 1;
    c->up = upstream_create(evb, &uo);
    c->answer = evbuffer_new();
    sh = pool_alloc(&op->pool, sizeof(*sh) * (a->nheaders + 4));
    for (i = 0; i < a->nheaders; i++) {
        sh[i] = a->headers[i];
    }
    t.base_url = site->url;
    t.access_key = key->access_key;
    t.secret = key->secret;
    t.region = cf->region; /* every site's proxy verifies the region its clients use */
    lines = upsign_lines(&op->pool, keys, &t, slice_cstr(a->method), a->path, a->query, sh,
                         a->nheaders, payload, &errstr);
    if (c->up == NULL || lines == NULL) {
        snprintf(err, errlen, "site %s: cannot build the request (%s)", site_id,
                 errstr ? errstr : "no connection pool");
        return -1;
    }
    xa.method = a->method;
    xa.path_query = a->query[0] ? pool_printf(&op->pool, "%s?%s", a->path, a->query) : a->path;
    xa.headers = lines;
    xa.body_length = op->body.len > 0 || strcmp(a->method, "PUT") == 0 ? (int64_t)op->body.len : -1;
    c->x = upstream_start(c->up, &xa, &call_ops, c);
    if (c->x == NULL) {
        snprintf(err, errlen, "site %s: cannot start the request", site_id);
        return -1;
    }
    return 0;
}

struct peerop *
peerop_start(struct event_base *evb, struct sigv4_key_cache *keys, const struct proxy_conf *cf,
             char *const *sites, size_t nsites, const struct peerop_args *a, peerop_done_fn done,
             void *arg, char *err, size_t errlen)
{
    struct peerop *op = xcalloc(1, sizeof(*op));
    char payload[65];
    struct timeval tv;
    size_t i;

    pool_init(&op->pool);
    op->done = done;
    op->arg = arg;
    op->body = a->body.len ? pool_slice_dup(&op->pool, a->body) : SLICE_LIT("");
    op->calls = xcalloc(nsites ? nsites : 1, sizeof(*op->calls));
    op->results = xcalloc(nsites ? nsites : 1, sizeof(*op->results));
    op->deadline = evtimer_new(evb, on_deadline, op);
    op->finish = event_new(evb, -1, 0, on_finish, op);
    sigv4_sha256_hex(op->body.ptr, op->body.len, payload);
    for (i = 0; i < nsites; i++) {
        op->ncalls++;
        op->nrunning++;
        if (call_start(op, &op->calls[i], evb, keys, cf, sites[i], a, payload, err, errlen) != 0) {
            peerop_free(op);
            return NULL;
        }
    }
    if (nsites == 0) {
        event_active(op->finish, 0, 0);
        return op;
    }
    tv.tv_sec = (time_t)(a->timeout_ms / 1000);
    tv.tv_usec = (suseconds_t)(a->timeout_ms % 1000) * 1000;
    evtimer_add(op->deadline, &tv);
    return op;
}

void
peerop_cancel(struct peerop *op)
{
    if (op != NULL) {
        peerop_free(op);
    }
}
