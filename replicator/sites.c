/*
 * sites.c - endpoints (local store, peers) and SigV4 signing of the replicator's requests.
 *
 * Every request is signed over all the headers we send (curl adds only Content-Length,
 * which S3 does not require to be signed), the same way the proxy signs for its store.
 */
#include "replicator/sites.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "replicator/conf.h"
#include "signing/creds.h"

#define CONNECT_TIMEOUT_MAX_MS 10000

static void
site_key(struct site *s, const struct creds_entry *key)
{
    s->access_key = key->access_key;
    s->secret = key->secret;
}

static void
site_init(struct site *s, struct event_base *evb, const struct repl_conf *cf, const char *id,
          const char *url, const char *host, const struct creds_entry *key, const char *ca_file,
          int tls_verify, struct sigv4_key_cache *kc, int max_connections)
{
    struct upstream_opts o;

    s->id = id;
    s->url = url;
    s->host = host;
    site_key(s, key);
    s->region = cf->region;
    s->keys = kc;
    memset(&o, 0, sizeof(o));
    o.base_url = url;
    o.ca_file = ca_file;
    o.tls_verify = tls_verify;
    o.connect_timeout_ms = cf->transfer_timeout_ms < CONNECT_TIMEOUT_MAX_MS
                               ? cf->transfer_timeout_ms
                               : CONNECT_TIMEOUT_MAX_MS;
    o.max_connections = max_connections;
    s->up = upstream_create(evb, &o);
}

struct sites *
sites_create(struct event_base *evb, const struct repl_conf *cf, int max_connections)
{
    struct sites *s = xcalloc(1, sizeof(*s));
    size_t i;

    sigv4_key_cache_init(&s->keys);
    site_init(&s->store, evb, cf, "store", cf->upstream, cf->upstream_host, creds_store(cf->creds),
              cf->upstream_ca_file, cf->upstream_tls_verify, &s->keys, max_connections);
    s->peers = xcalloc(cf->npeers, sizeof(*s->peers));
    s->npeers = cf->npeers;
    for (i = 0; i < cf->npeers; i++) {
        const struct repl_peer *p = &cf->peers[i];

        site_init(&s->peers[i], evb, cf, p->id, p->url, p->host,
                  creds_find_peer(cf->creds, slice_cstr(p->id)),
                  p->ca_file != NULL ? p->ca_file : cf->peer_ca_file,
                  cf->peer_tls_verify, &s->keys, max_connections);
    }
    return s;
}

void
sites_destroy(struct sites *s)
{
    size_t i;

    if (s == NULL) {
        return;
    }
    upstream_destroy(s->store.up);
    for (i = 0; i < s->npeers; i++) {
        upstream_destroy(s->peers[i].up);
    }
    free(s->peers);
    sigv4_key_cache_deinit(&s->keys);
    free(s);
}

void
sites_rekey(struct sites *s, const struct repl_conf *cf)
{
    size_t i;

    site_key(&s->store, creds_store(cf->creds));
    for (i = 0; i < s->npeers; i++) {
        site_key(&s->peers[i], creds_find_peer(cf->creds, slice_cstr(s->peers[i].id)));
    }
    sigv4_key_cache_deinit(&s->keys); /* wipes the keys derived from the old secrets */
    sigv4_key_cache_init(&s->keys);
}

struct site *
sites_peer(struct sites *s, const char *id)
{
    size_t i;

    for (i = 0; i < s->npeers; i++) {
        if (strcmp(s->peers[i].id, id) == 0) {
            return &s->peers[i];
        }
    }
    return NULL;
}

/* Stable insertion sort by name (byte order): repeated names keep their order. */
static void
sort_headers(struct sigv4_header *h, size_t n)
{
    size_t i, j;

    for (i = 1; i < n; i++) {
        struct sigv4_header t = h[i];

        for (j = i; j > 0 && slice_cmp(h[j - 1].name, t.name) > 0; j--) {
            h[j] = h[j - 1];
        }
        h[j] = t;
    }
}

const char **
sites_sign(struct pool *p, struct sigv4_key_cache *kc, const char *access_key, const char *secret,
           const char *region, const char *host, const struct sites_request *rq, time_t now,
           char **canonical)
{
    struct sigv4_header *sh = pool_alloc(p, sizeof(*sh) * (rq->nheaders + 3));
    struct sigv4_request sr;
    char amz_date[TIMEUTIL_AMZ_LEN], sig[65];
    char *signed_list, *creq, *sts, *scope, *date8;
    const char *errstr = NULL;
    const uint8_t *key;
    const char **lines;
    size_t i, n = 0, sl = 0;

    timeutil_amz_date(now, amz_date);
    date8 = pool_strndup(p, amz_date, 8);
    for (i = 0; i < rq->nheaders; i++) {
        sh[n++] = rq->headers[i];
    }
    sh[n++] = (struct sigv4_header){SLICE_LIT("host"), slice_cstr(host)};
    sh[n++] =
        (struct sigv4_header){SLICE_LIT("x-amz-date"), slice_cstr(pool_strndup(p, amz_date, 16))};
    sh[n++] = (struct sigv4_header){SLICE_LIT("x-amz-content-sha256"), slice_cstr(rq->payload)};
    sort_headers(sh, n);
    for (i = 0; i < n; i++) {
        sl += sh[i].name.len + 1;
    }
    signed_list = pool_alloc(p, sl + 1);
    sl = 0;
    for (i = 0; i < n; i++) {
        if (i > 0 && slice_eq(sh[i].name, sh[i - 1].name)) {
            continue;
        }
        if (sl) {
            signed_list[sl++] = ';';
        }
        memcpy(signed_list + sl, sh[i].name.ptr, sh[i].name.len);
        sl += sh[i].name.len;
    }
    signed_list[sl] = '\0';
    sr.method = slice_cstr(rq->method);
    sr.canonical_uri = slice_cstr(rq->path);
    sr.query = slice_cstr(rq->query);
    sr.headers = sh;
    sr.nheaders = n;
    sr.payload_hash = slice_cstr(rq->payload);
    creq = sigv4_canonical_request(p, &sr, slice_make(signed_list, sl), 0, &errstr);
    if (creq == NULL) {
        return NULL;
    }
    if (canonical != NULL) {
        *canonical = creq;
    }
    scope = pool_printf(p, "%s/%s/s3/aws4_request", date8, region);
    sts = sigv4_string_to_sign(p, slice_make(amz_date, 16), slice_cstr(scope), creq);
    key = sigv4_key_cache_get(kc, slice_cstr(access_key), slice_cstr(secret), slice_make(date8, 8),
                              slice_cstr(region), SLICE_LIT("s3"));
    sigv4_sign(key, sts, sig);
    lines = pool_alloc(p, sizeof(*lines) * (n + 2));
    for (i = 0; i < n; i++) {
        lines[i] = pool_printf(p, "%.*s: %.*s", SLICE_ARGS(sh[i].name), SLICE_ARGS(sh[i].value));
    }
    lines[n] = pool_printf(p,
                           "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                           "Signature=%s",
                           access_key, scope, signed_list, sig);
    lines[n + 1] = NULL;
    return lines;
}

struct upstream_xfer *
sites_start(struct site *s, struct pool *p, const struct sites_request *rq, int64_t body_length,
            const struct upstream_xfer_ops *ops, void *arg)
{
    struct upstream_xfer_args xa;
    const char **lines;

    lines = sites_sign(p, s->keys, s->access_key, s->secret, s->region, s->host, rq,
                       (time_t)(timeutil_now_ms() / 1000), NULL);
    if (lines == NULL) {
        log_error("sites", "cannot sign %s %s at %s (bad query)", rq->method, rq->path, s->id);
        return NULL;
    }
    xa.method = rq->method;
    xa.path_query = rq->query[0] ? pool_printf(p, "%s?%s", rq->path, rq->query) : rq->path;
    xa.headers = lines;
    xa.body_length = body_length;
    return upstream_start(s->up, &xa, ops, arg);
}
