/*
 * conf.h - the replicator's configuration: directive table, defaults, validation.
 *
 * replicator.conf.example documents every directive at its default. Loading parses the file
 * (file:line errors), fills defaults, checks required and cross-field rules, then loads the
 * credentials file and checks that it has a 'peer' key for every peer.
 */
#ifndef S3TEE_REPLICATOR_CONF_H
#define S3TEE_REPLICATOR_CONF_H

#include <stddef.h>
#include <stdint.h>

struct creds;

/* One "peer SITE_ID URL [CA_FILE]" line: a remote site and its s3tee proxy. */
struct repl_peer {
    char *id;      /* site id (owned) */
    char *url;     /* "http://host:port" or "https://...", no trailing '/' (owned) */
    char *host;    /* host[:port] as written in the URL: the Host header we sign (owned) */
    char *ca_file; /* CA bundle for this peer only, resolved; NULL = peer_ca_file (owned) */
    int plain;     /* 1 for an http:// URL (allowed only with peer_plain_http) */
    int line;      /* line of the directive, for messages */
};

struct repl_conf {
    char *path; /* config file as given (owned) */

    /* this site */
    char *site_id;           /* our site id (owned) */
    char *redis_host;        /* the site's Redis host (owned) */
    int redis_port;          /* and port */
    char *upstream;          /* local store base URL, no trailing '/' (owned) */
    char *upstream_host;     /* its host[:port] for the Host header (owned) */
    char *upstream_ca_file;  /* CA bundle for an https store, NULL = system (owned) */
    int upstream_tls_verify; /* verify the store's certificate */
    char *region;            /* SigV4 region, at the store and at peers (owned) */
    char *credentials_file;  /* path, resolved against the config's directory (owned) */
    struct creds *creds;     /* loaded credentials (owned) */

    /* peers */
    struct repl_peer *peers; /* in file order (owned) */
    size_t npeers;           /* at least one */
    char *peer_ca_file;      /* CA bundle for https peers, NULL = system (owned) */
    int peer_tls_verify;     /* verify peers' certificates */
    int peer_plain_http;     /* http:// peers allowed (explicit opt-in; default off) */

    /* consuming */
    int concurrency;             /* transfers in flight per process, across peers */
    int batch;                   /* XREADGROUP / XAUTOCLAIM COUNT */
    int block_ms;                /* XREADGROUP BLOCK, milliseconds */
    int64_t retry_base_ms;       /* first backoff ceiling */
    int64_t retry_max_ms;        /* largest backoff ceiling */
    int max_attempts;            /* failures before the dead-letter stream */
    int64_t claim_idle_ms;       /* XAUTOCLAIM min idle time */
    char *consumer;              /* consumer name in every group (owned; default host-pid) */
    int64_t command_timeout_ms;  /* per Redis command */
    int64_t transfer_timeout_ms; /* a transfer with no progress for this long fails */
    int backlog_cap;             /* entries a peer may owe before it is marked for resync; 0 off */
    int backlog_memory_cap;      /* % of Redis maxmemory that marks the largest backlog; 0 off */
    int64_t trim_interval_ms;    /* trim, lag and backlog-cap round */
    char *meta_bucket;           /* bucket at the store for s3tee's own records (owned) */

    /* tombstones (gc.h) */
    int64_t gc_interval_ms;      /* low-water round and sweep; 0 = tombstones are kept */
    int64_t tombstone_keep_ms;   /* a stable tombstone still stays this long */
    int gc_scan_limit;           /* stream entries a round may read per peer */

    /* anti-entropy */
    int64_t resync_interval_ms; /* run resync with every peer this often; 0 = only on rebuild */
    char **resync_buckets;      /* buckets resync covers (owned) */
    size_t nresync_buckets;     /* entries in resync_buckets */
    char *resync_proxy;         /* this site's proxy, for pulls; NULL = push only (owned) */
    char *resync_command;       /* the s3tee binary; NULL = beside this one (owned) */

    /* process */
    char *log_level;    /* error|warn|info|debug (owned) */
    char *error_log;    /* "stderr" or a path (owned) */
    char *pid_file;     /* NULL = none (owned) */
    char *metrics_file; /* NULL = none; JSON snapshot (owned) */
};

/*
 * repl_conf_load - parse, default and validate PATH, then load its credentials file.
 * Returns the configuration (free with repl_conf_free), or NULL with one line in ERR:
 *   "replicator.conf:7: peer: 'a' is this site (site_id); list the other sites"
 */
struct repl_conf *repl_conf_load(const char *path, char *err, size_t errlen);
/* Frees CF and everything it owns (secrets are wiped by creds_destroy). NULL is a no-op. */
void repl_conf_free(struct repl_conf *cf);
/*
 * repl_conf_reload_creds - read CF's credentials_file again (SIGHUP: a site key rotated).
 * The new list must hold a 'peer' key for every peer. On success it replaces cf->creds and
 * the previous list is returned: the caller moves every user off it (sites_rekey) and then
 * frees it with creds_destroy(). On failure returns NULL with one line in ERR, CF unchanged.
 */
struct creds *repl_conf_reload_creds(struct repl_conf *cf, char *err, size_t errlen);

#endif
