/*
 * conf.h - the proxy's configuration: directive table, defaults and cross-field checks.
 *
 * A struct proxy_conf is immutable once loaded. Workers hold a reference to the one they
 * started a request with (proxy_conf_ref/unref), so SIGHUP can swap in a new one while
 * requests under the old one finish.
 */
#ifndef S3TEE_PROXY_CONF_H
#define S3TEE_PROXY_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "signing/creds.h"

struct proxy_listen {
    char *host;  /* numeric address or name, e.g. "127.0.0.1" or "::" (owned) */
    char *port;  /* service, e.g. "8001" (owned) */
    int tls;     /* 1 for "listen_tls": TLS with ALPN h2/http/1.1 */
};

enum repl_mode {
    REPL_OFF = 0,      /* pass-through, nothing recorded */
    REPL_ASYNC,        /* acknowledge after the local write, replicate from the queue */
    REPL_SYNC,         /* acknowledge after the peers applied it (not available yet) */
};

struct proxy_site {
    char *id;          /* site id (owned) */
    char *url;         /* base URL of that site's s3tee proxy (owned) */
    int line;          /* config line, for messages */
};

struct proxy_bucket_rule {
    char *bucket;      /* bucket name, or "*" for the default rule (owned) */
    int public_read;   /* anonymous GET/HEAD allowed */
    int has_mode;      /* bucket_replication given for this bucket */
    enum repl_mode mode; /* its replication mode */
    char **peers;      /* sites it replicates to (owned; NULL = every other site) */
    size_t npeers;
    int line;          /* line of its bucket_replication directive */
};

struct proxy_conf {
    int refs;                       /* atomic reference count; see proxy_conf_ref() */
    char *path;                     /* file this was loaded from (owned) */

    /* front end */
    struct proxy_listen *listens;   /* "listen" / "listen_tls", repeatable (owned array) */
    size_t nlistens;
    char *tls_certificate;          /* PEM chain for listen_tls (owned; NULL = none) */
    char *tls_certificate_key;      /* PEM key for listen_tls (owned) */
    int workers;                    /* worker threads; 0 = one per core */
    int max_connections;            /* per process; further accepts wait */
    int64_t max_header_bytes;       /* whole request head, request line included */
    int max_header_count;           /* header lines per request */
    int64_t max_request_line;       /* request line (method, target, version) */
    int64_t client_header_timeout_ms; /* first byte to end of head */
    int64_t client_body_timeout_ms;   /* longest gap between body reads */
    int64_t client_body_min_rate;     /* bytes/s a body averages over client_body_timeout */
    int64_t client_idle_timeout_ms;   /* keep-alive wait for the next request */
    int64_t client_send_timeout_ms;   /* longest gap between response writes */
    int64_t max_inflight_body;      /* per-request bytes buffered between client and store */
    int h2_max_concurrent_streams;  /* SETTINGS_MAX_CONCURRENT_STREAMS */
    int64_t max_xml_body;           /* DeleteObjects / CompleteMultipartUpload request body */
    int h2_max_resets_per_second;   /* stream resets (received or provoked) before GOAWAY */
    int h2_max_resets_per_minute;   /*   ENHANCE_YOUR_CALM: rapid reset, made-you-reset */
    int h2_max_pending_acks;        /* SETTINGS/PING ACKs queued before the peer is a flooder */
    int h2_max_continuations;       /* CONTINUATION frames after one HEADERS */

    /* S3 */
    char *region;                   /* region clients sign for, e.g. "us-east-1" */
    char **virtual_host_domains;    /* "virtual_host_domain", repeatable (owned) */
    size_t nvirtual_host_domains;
    int64_t max_clock_skew_ms;      /* "max_clock_skew", default 15m */
    char *credentials_file;         /* client and store keys, see signing/creds.h */
    struct creds *creds;            /* loaded from credentials_file (owned) */
    struct proxy_bucket_rule *buckets; /* "public_read_bucket" and later per-bucket rules */
    size_t nbuckets;

    /* replication (notes/replication.md) */
    char *site_id;                  /* this site; NULL = replication not configured */
    struct proxy_site *sites;       /* every site of the deployment, this one included */
    size_t nsites;
    char *redis_host;               /* the site's Redis */
    int redis_port;
    int64_t redis_command_timeout_ms;
    enum repl_mode replication;     /* default mode for buckets without a rule */
    int64_t max_clock_offset_ms;    /* refuse peer stamps further ahead than this */
    int64_t lease_ms;               /* per-key write lease, renewed while bytes flow */
    int64_t lease_wait_ms;          /* how long a write waits for a busy key (then 503) */
    char *site_ca_file;             /* CA bundle for https site URLs (NULL = system) */
    int site_plain_http;            /* http:// URLs of other sites allowed (opt-in) */
    int64_t bucket_op_timeout_ms;   /* bucket-level operation at every site, then 503 */
    char *conflict_bucket;          /* conflict losers are copied here (NULL = off) */

    /* upstream: the local S3 store */
    char *upstream;                 /* base URL "http://127.0.0.1:8000" (owned) */
    char *upstream_region;          /* region to sign for at the store (default: region) */
    char *upstream_ca_file;         /* CA bundle for https upstreams (NULL = system) */
    int upstream_tls_verify;        /* 1 unless "upstream_tls_verify off" */
    int64_t upstream_connect_timeout_ms;
    int64_t upstream_first_byte_timeout_ms; /* request fully sent to response head */
    int64_t upstream_io_timeout_ms;        /* longest stall in either direction */
    int upstream_max_connections;   /* per worker, kept alive between requests */
    int upstream_splice;            /* large GET bodies spliced socket to socket */
    int upstream_https;             /* 1 when upstream starts with https:// */
    char *upstream_host;            /* host from upstream, without [] for IPv6 (owned) */
    char *upstream_port;            /* port from upstream, or "80" / "443" (owned) */

    /* logs */
    char *access_log;               /* path, "stderr" or "off" */
    char *error_log;                /* path or "stderr" */
    char *log_level;                /* error|warn|info|debug */
    char *pid_file;                 /* NULL = none */
};

/*
 * proxy_conf_load - read, parse and validate PATH.
 * Returns a conf with refs = 1 (release with proxy_conf_unref), or NULL with a message in ERR
 * of the form "proxy.conf:12: upstream_connect_timeout: expected a duration like 5s or 250ms,
 * got 'soon'". Also loads the credentials file (its errors name that file and line).
 */
struct proxy_conf *proxy_conf_load(const char *path, char *err, size_t errlen);
struct proxy_conf *proxy_conf_ref(struct proxy_conf *cf);
void proxy_conf_unref(struct proxy_conf *cf);
/* Replication mode for BUCKET (its rule, else the default). */
enum repl_mode proxy_conf_repl_mode(const struct proxy_conf *cf, const char *bucket, size_t len);
/* Rule for BUCKET (exact name), else the "*" rule, else NULL. */
const struct proxy_bucket_rule *proxy_conf_bucket(const struct proxy_conf *cf, const char *bucket,
                                                  size_t len);

#endif
