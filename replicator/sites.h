/*
 * sites.h - the endpoints the replicator talks to: the local store and each peer site's
 * s3tee proxy. One struct upstream (libcurl pool) per endpoint, the key to sign with
 * there, and the SigV4 signing of one request.
 */
#ifndef S3TEE_REPLICATOR_SITES_H
#define S3TEE_REPLICATOR_SITES_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/pool.h"
#include "common/upstream.h"
#include "signing/sigv4.h"

struct event_base;
struct repl_conf;

/* An endpoint and the key we sign with there. */
struct site {
    const char *id;               /* peer site id, or "store" for the local store (borrowed) */
    const char *url;              /* base URL, no trailing '/' (borrowed from the conf) */
    const char *host;             /* host[:port]: the Host header we send and sign (borrowed) */
    const char *access_key;       /* access key id (borrowed from the credentials) */
    const char *secret;           /* secret key (borrowed; never logged) */
    const char *region;           /* SigV4 region (borrowed) */
    struct upstream *up;          /* connection pool to this endpoint (owned) */
    struct sigv4_key_cache *keys; /* derived-key cache shared by all sites (borrowed) */
};

struct sites {
    struct site store;           /* the local store, signed with the 'store' key */
    struct site *peers;          /* one per 'peer' line, in conf order (owned) */
    size_t npeers;               /* number of peers */
    struct sigv4_key_cache keys; /* one cache for the process (single event loop) */
};

/*
 * sites_create - endpoints for CF's store and peers, with connection pools of up to
 * MAX_CONNECTIONS each. CF (and its credentials) must outlive the result.
 * Free with sites_destroy(), which cancels every transfer still running.
 */
struct sites *sites_create(struct event_base *evb, const struct repl_conf *cf, int max_connections);
void sites_destroy(struct sites *s);
/* The peer with this id, or NULL. */
struct site *sites_peer(struct sites *s, const char *id);
/*
 * sites_rekey - sign from now on with the keys of CF's current credentials (after
 * repl_conf_reload_creds()): the store key and each peer's 'peer' key. Transfers already
 * started keep the signature they were sent with; retries are signed afresh. The cache of
 * derived keys is wiped, so no key of the previous list stays in memory. CF's credentials
 * must hold every key (repl_conf_reload_creds() checks it) and outlive S or the next rekey.
 */
void sites_rekey(struct sites *s, const struct repl_conf *cf);

/* One request, before signing. */
struct sites_request {
    const char *method;                 /* "PUT" */
    const char *path;                   /* URI-encoded path: "/bucket/a%20key" */
    const char *query;                  /* encoded query without '?'; "" for none */
    const struct sigv4_header *headers; /* extra headers, lowercase names, non-empty values */
    size_t nheaders;                    /* entries in headers */
    const char *payload;                /* x-amz-content-sha256: hex or UNSIGNED-PAYLOAD */
};

/*
 * sites_sign - SigV4-sign RQ for host HOST with ACCESS_KEY/SECRET in REGION at time NOW:
 * adds host, x-amz-date and x-amz-content-sha256, signs every header, and returns the
 * "Name: value" lines (Authorization last), NULL-terminated, in pool P; NULL if the
 * request cannot be signed (bad query escape). When CANONICAL is not NULL it gets the
 * canonical request (pool string), for tests. KC caches derived keys.
 */
const char **sites_sign(struct pool *p, struct sigv4_key_cache *kc, const char *access_key,
                        const char *secret, const char *region, const char *host,
                        const struct sites_request *rq, time_t now, char **canonical);

/*
 * sites_start - sign RQ for site S (now) and start it with a request body of BODY_LENGTH
 * bytes (-1: none). Strings are copied by the transfer; P only needs to live for the call.
 * Returns the transfer (see common/upstream.h for OPS and ARG) or NULL.
 */
struct upstream_xfer *sites_start(struct site *s, struct pool *p, const struct sites_request *rq,
                                  int64_t body_length, const struct upstream_xfer_ops *ops,
                                  void *arg);

#endif
