/*
 * conf.c - the replicator's directive table, defaults and cross-field validation.
 *
 *   repl_conf_load(path)
 *     conf_parse_file()    one setter per line (table below), file:line errors
 *     validate()           table defaults, computed defaults (consumer), required
 *                          directives, peer rules, ranges between directives
 *     creds_load()         the credentials file; then every peer needs its 'peer' key
 *
 * Adding a directive: a CONF_CMD line in repl_conf_cmds, a field in struct repl_conf,
 * freeing it in repl_conf_free() if it owns memory, and a commented entry in
 * replicator.conf.example (a unit test checks that every directive appears there at its
 * default).
 */
#include "replicator/conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "queue/stamp.h"
#include "signing/creds.h"

#define F(field) offsetof(struct repl_conf, field)
#define SEC 1000LL
#define DAY (86400LL * 1000)

/* --- value types ------------------------------------------------------------------------- */

static int
is_host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

/* 1 if S[0..LEN) is a port 1..65535. */
static int
valid_port(const char *s, size_t len)
{
    unsigned v = 0;
    size_t i;

    if (len == 0 || len > 5) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/*
 * "host", "host:port", "[v6]" or "[v6]:port" in S[0..LEN). Returns 0 and sets *PORT_AT to
 * the port's first byte (NULL when absent) and *HOST_LEN to the host part's length
 * (brackets included); -1 for a bad host, -2 for a bad port.
 */
static int
check_authority(const char *s, size_t len, const char **port_at, size_t *host_len)
{
    const char *end = s + len, *he, *p;

    *port_at = NULL;
    if (len > 0 && s[0] == '[') {
        char v6[64];
        struct in6_addr a6;

        he = memchr(s, ']', len);
        if (he == NULL || he == s + 1 || (size_t)(he - s - 1) >= sizeof(v6)) {
            return -1;
        }
        memcpy(v6, s + 1, (size_t)(he - s - 1));
        v6[he - s - 1] = '\0';
        if (inet_pton(AF_INET6, v6, &a6) != 1) {
            return -1;
        }
        he++;
        if (he < end && *he != ':') {
            return -1;
        }
    } else {
        he = memchr(s, ':', len);
        if (he == NULL) {
            he = end;
        }
        if (he == s) {
            return -1;
        }
        for (p = s; p < he; p++) {
            if (!is_host_char(*p)) {
                return -1; /* a second ':' lands here: bare IPv6 needs [] */
            }
        }
    }
    *host_len = (size_t)(he - s);
    if (he < end) {
        if (!valid_port(he + 1, (size_t)(end - he - 1))) {
            return -2;
        }
        *port_at = he + 1;
    }
    return 0;
}

/*
 * "http://host[:port]" or "https://..." with no path but an optional "/". On success
 * *BASE is the URL without the trailing '/' and *HOST its host[:port] (both xmalloc'd).
 * Returns NULL or a setter phrase.
 */
static const char *
parse_url(const char *s, char **base, char **host)
{
    const char *auth, *tail, *port_at;
    size_t alen, hlen;
    int rc;

    if (strncasecmp(s, "http://", 7) == 0) {
        auth = s + 7;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        auth = s + 8;
    } else {
        return "expected a URL starting with http:// or https://";
    }
    alen = strcspn(auth, "/?#");
    tail = auth + alen;
    if (memchr(auth, '@', alen) != NULL) {
        return "expected no user name in the URL (keys belong in credentials_file)";
    }
    if (tail[0] != '\0' && strcmp(tail, "/") != 0) {
        return "expected no path or query after host[:port]";
    }
    rc = check_authority(auth, alen, &port_at, &hlen);
    if (rc == -2) {
        return "expected a port from 1 to 65535 after the host";
    }
    if (rc != 0) {
        return "expected a host name or address after the scheme, like http://127.0.0.1:8000";
    }
    *base = xstrndup(s, (size_t)(tail - s));
    *host = xstrndup(auth, alen);
    return NULL;
}

static const char *
set_upstream(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    struct repl_conf *cf = obj;
    char *base, *host;
    const char *phrase;

    (void)cmd;
    (void)argc;
    phrase = parse_url(argv[0], &base, &host);
    if (phrase != NULL) {
        return phrase;
    }
    free(cf->upstream);
    free(cf->upstream_host);
    cf->upstream = base;
    cf->upstream_host = host;
    return NULL;
}

static const char *
set_site_id(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    if (!stamp_site_valid(slice_cstr(argv[0]))) {
        return "expected a site id of 1 to 32 characters from a-z, 0-9 and '-'";
    }
    return conf_set_string(obj, cmd, argc, argv);
}

/*
 * "peer SITE_ID URL [CA_FILE]", repeatable. CA_FILE is resolved and checked in validate()
 * (setters do not know the config's directory), as are site_id, peer_plain_http and the
 * credentials.
 */
static const char *
set_peer(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    struct repl_conf *cf = obj;
    struct repl_peer *p;
    char *base, *host;
    const char *phrase;
    size_t i;

    (void)cmd;
    (void)argc;
    if (!stamp_site_valid(slice_cstr(argv[0]))) {
        return "expected 'peer SITE_ID URL [CA_FILE]' with a site id of 1 to 32 characters from a-z, 0-9 "
               "and '-'";
    }
    for (i = 0; i < cf->npeers; i++) {
        if (strcmp(cf->peers[i].id, argv[0]) == 0) {
            return conf_phrasef("peer '%s' is a duplicate (first listed at line %d)", argv[0],
                                cf->peers[i].line);
        }
    }
    phrase = parse_url(argv[1], &base, &host);
    if (phrase != NULL) {
        /* "expected ..." gets the whole argument list appended by the loader */
        return conf_phrasef("%s (the URL of site '%s''s s3tee proxy)", phrase, argv[0]);
    }
    if (cf->npeers == VV_MAX_SITES - 1) {
        free(base);
        free(host);
        return conf_phrasef("more than %d peers (version vectors hold %d sites)", VV_MAX_SITES - 1,
                            VV_MAX_SITES);
    }
    cf->peers = xrealloc(cf->peers, (cf->npeers + 1) * sizeof(cf->peers[0]));
    p = &cf->peers[cf->npeers++];
    memset(p, 0, sizeof(*p));
    p->id = xstrdup(argv[0]);
    p->url = base;
    p->host = host;
    p->plain = strncasecmp(base, "http://", 7) == 0;
    p->ca_file = argc > 2 ? xstrdup(argv[2]) : NULL;
    p->line = conf_current_line();
    return NULL;
}

static const char *
set_redis(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    struct repl_conf *cf = obj;
    const char *s = argv[0], *port_at;
    size_t hlen;

    (void)cmd;
    (void)argc;
    if (check_authority(s, strlen(s), &port_at, &hlen) != 0 || port_at == NULL) {
        return "expected HOST:PORT of the site's Redis, like 127.0.0.1:6379";
    }
    free(cf->redis_host);
    if (s[0] == '[') {
        cf->redis_host = xstrndup(s + 1, hlen - 2);
    } else {
        cf->redis_host = xstrndup(s, hlen);
    }
    cf->redis_port = atoi(port_at);
    return NULL;
}

/* char *: a SigV4 region name ("us-east-1"). */
static const char *
set_region(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    const char *p;

    for (p = argv[0]; *p != '\0'; p++) {
        if (!is_host_char(*p)) {
            return "expected a region name like us-east-1";
        }
    }
    return conf_set_string(obj, cmd, argc, argv);
}

/* char *: a consumer name: printable, no spaces (it appears in Redis and in logs). */
static const char *
set_consumer(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    const char *p;

    for (p = argv[0]; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) {
            return "expected a consumer name of printable characters without spaces";
        }
    }
    if (p - argv[0] > 200) {
        return "expected a consumer name of at most 200 characters";
    }
    return conf_set_string(obj, cmd, argc, argv);
}

static const char *
set_error_log(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    if (strcmp(argv[0], "off") == 0) {
        return "expected a file path or stderr (errors are always logged)";
    }
    return conf_set_string(obj, cmd, argc, argv);
}

static const struct conf_enum log_levels[] = {
    {"error", LOG_ERROR}, {"warn", LOG_WARN}, {"info", LOG_INFO}, {"debug", LOG_DEBUG}, {NULL, 0}};

/* "resync_bucket NAME...", repeatable: the buckets scheduled resyncs cover. */
static const char *
set_resync_bucket(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    struct repl_conf *cf = obj;
    int i;

    (void)cmd;
    for (i = 0; i < argc; i++) {
        cf->resync_buckets = xrealloc(cf->resync_buckets,
                                      (cf->nresync_buckets + 1) * sizeof(cf->resync_buckets[0]));
        cf->resync_buckets[cf->nresync_buckets++] = xstrdup(argv[i]);
    }
    return NULL;
}

/* --- the table ---------------------------------------------------------------------------- */

/* clang-format off */
static const struct conf_cmd repl_conf_cmds[] = {
    /* this site */
    CONF_CMD("site_id", set_site_id, F(site_id)),
    CONF_CMD("redis", set_redis, 0),
    CONF_CMD("upstream", set_upstream, 0),
    CONF_CMD("upstream_ca_file", conf_set_string, F(upstream_ca_file), .flags = CONF_PATH),
    CONF_CMD("upstream_tls_verify", conf_set_bool, F(upstream_tls_verify), .def = "on"),
    CONF_CMD("region", set_region, F(region), .def = "us-east-1"),
    CONF_CMD("credentials_file", conf_set_string, F(credentials_file), .flags = CONF_PATH),

    /* peers */
    CONF_CMD("peer", set_peer, 0, .flags = CONF_REPEATABLE, .min_args = 2, .max_args = 3),
    CONF_CMD("peer_ca_file", conf_set_string, F(peer_ca_file), .flags = CONF_PATH),
    CONF_CMD("peer_tls_verify", conf_set_bool, F(peer_tls_verify), .def = "on"),
    CONF_CMD("peer_plain_http", conf_set_bool, F(peer_plain_http), .def = "off"),

    /* consuming the stream */
    CONF_CMD("concurrency", conf_set_int, F(concurrency), .def = "32", .min = 1, .max = 4096),
    CONF_CMD("batch", conf_set_int, F(batch), .def = "64", .min = 1, .max = 10000),
    CONF_CMD("block_ms", conf_set_int, F(block_ms), .def = "1000", .min = 1, .max = 60000),
    CONF_CMD("retry_base", conf_set_duration, F(retry_base_ms), .def = "1s", .min = 1,
             .max = DAY),
    CONF_CMD("retry_max", conf_set_duration, F(retry_max_ms), .def = "60s", .min = 1, .max = DAY),
    CONF_CMD("max_attempts", conf_set_int, F(max_attempts), .def = "10", .min = 1,
             .max = 1000000),
    CONF_CMD("claim_idle", conf_set_duration, F(claim_idle_ms), .def = "60s", .min = 100,
             .max = DAY),
    CONF_CMD("consumer", set_consumer, F(consumer)),
    CONF_CMD("command_timeout", conf_set_duration, F(command_timeout_ms), .def = "2s", .min = 1,
             .max = DAY),
    CONF_CMD("transfer_timeout", conf_set_duration, F(transfer_timeout_ms), .def = "60s",
             .min = 1, .max = DAY),
    CONF_CMD("backlog_cap", conf_set_int, F(backlog_cap), .def = "1000000", .min = 0,
             .max = 2000000000),
    CONF_CMD("backlog_memory_cap", conf_set_int, F(backlog_memory_cap), .def = "80", .min = 0,
             .max = 100),
    CONF_CMD("trim_interval", conf_set_duration, F(trim_interval_ms), .def = "10s", .min = 100,
             .max = DAY),
    CONF_CMD("meta_bucket", conf_set_string, F(meta_bucket), .def = "s3tee-meta"),

    /* tombstones (replicator/gc.c) */
    CONF_CMD("gc_interval", conf_set_duration, F(gc_interval_ms), .def = "10s", .min = 0,
             .max = DAY),
    CONF_CMD("tombstone_keep", conf_set_duration, F(tombstone_keep_ms), .def = "1h", .min = 0,
             .max = 365 * DAY),
    CONF_CMD("gc_scan_limit", conf_set_int, F(gc_scan_limit), .def = "10000", .min = 1,
             .max = 1000000),

    /* anti-entropy (replicator/resched.c runs tools/resync.c) */
    CONF_CMD("resync_interval", conf_set_duration, F(resync_interval_ms), .def = "0", .min = 0,
             .max = 365 * DAY),
    CONF_CMD("resync_bucket", set_resync_bucket, 0, .flags = CONF_REPEATABLE, .min_args = 1,
             .max_args = -1),
    CONF_CMD("resync_proxy", conf_set_string, F(resync_proxy)),
    CONF_CMD("resync_command", conf_set_string, F(resync_command)),

    /* process */
    CONF_CMD("log_level", conf_set_enum_name, F(log_level), .def = "info", .choices = log_levels),
    CONF_CMD("error_log", set_error_log, F(error_log), .def = "stderr"),
    CONF_CMD("pid_file", conf_set_string, F(pid_file)),
    CONF_CMD("metrics_file", conf_set_string, F(metrics_file)),

    CONF_END,
};
/* clang-format on */

/* --- validation ---------------------------------------------------------------------------- */

static int
check_readable(const struct conf_file *f, const char *name, const char *path, char *err,
               size_t errlen)
{
    if (path == NULL || access(path, R_OK) == 0) {
        return 0;
    }
    return conf_errorf(f, conf_line_of(f, name), err, errlen, "%s: cannot read '%s': %s", name,
                       path, strerror(errno));
}

static int
validate(struct repl_conf *cf, struct conf_file *f, char *err, size_t errlen)
{
    size_t i;

    if (conf_set_defaults(f, cf, err, errlen) != 0) {
        return -1;
    }
    if (conf_require(f, "site_id", err, errlen) != 0 ||
        conf_require(f, "redis", err, errlen) != 0 ||
        conf_require(f, "upstream", err, errlen) != 0 ||
        conf_require(f, "credentials_file", err, errlen) != 0) {
        return -1;
    }
    if (cf->npeers == 0) {
        return conf_errorf(f, 0, err, errlen,
                           "peer is required (one 'peer SITE_ID URL' line per other site)");
    }
    for (i = 0; i < cf->npeers; i++) {
        struct repl_peer *p = &cf->peers[i];

        if (strcmp(p->id, cf->site_id) == 0) {
            return conf_errorf(f, p->line, err, errlen,
                               "peer: '%s' is this site (site_id); list the other sites", p->id);
        }
        /* replica writes carry every object and a site key's signatures: clear text only
         * when the operator says the network between the sites is trusted */
        if (p->plain && !cf->peer_plain_http) {
            return conf_errorf(f, p->line, err, errlen,
                               "peer: '%s' has a plain http:// URL (%s): replica writes would "
                               "cross the network unencrypted; use https:// or, on a trusted "
                               "network only, set 'peer_plain_http yes'",
                               p->id, p->url);
        }
        if (p->ca_file != NULL) {
            char *abs;

            if (p->plain) {
                return conf_errorf(f, p->line, err, errlen,
                                   "peer: '%s' has a CA_FILE but a plain http:// URL", p->id);
            }
            abs = conf_resolve_path(f, p->ca_file);
            free(p->ca_file);
            p->ca_file = abs;
            if (access(p->ca_file, R_OK) != 0) {
                return conf_errorf(f, p->line, err, errlen, "peer: cannot read '%s': %s",
                                   p->ca_file, strerror(errno));
            }
        }
    }
    if (cf->retry_max_ms < cf->retry_base_ms) {
        return conf_errorf(f,
                           conf_line_of(f, "retry_max") ? conf_line_of(f, "retry_max")
                                                        : conf_line_of(f, "retry_base"),
                           err, errlen, "retry_max: must not be below retry_base");
    }
    if (check_readable(f, "upstream_ca_file", cf->upstream_ca_file, err, errlen) != 0 ||
        check_readable(f, "peer_ca_file", cf->peer_ca_file, err, errlen) != 0) {
        return -1;
    }
    if (cf->consumer == NULL) {
        char host[256];

        if (gethostname(host, sizeof(host)) != 0) {
            strcpy(host, "replicator");
        }
        host[sizeof(host) - 1] = '\0';
        for (i = 0; host[i] != '\0'; i++) {
            if ((unsigned char)host[i] <= ' ' || (unsigned char)host[i] >= 0x7f) {
                host[i] = '_';
            }
        }
        cf->consumer = xmalloc(strlen(host) + 24);
        sprintf(cf->consumer, "%s-%ld", host, (long)getpid());
    }
    return 0;
}

/* Every peer needs the key this site signs with there. */
static int
validate_peer_keys(const struct repl_conf *cf, char *err, size_t errlen)
{
    size_t i;

    for (i = 0; i < cf->npeers; i++) {
        const struct repl_peer *p = &cf->peers[i];

        if (creds_find_peer(cf->creds, slice_cstr(p->id)) == NULL) {
            snprintf(err, errlen,
                     "%s:%d: peer: no 'peer %s ACCESS_KEY SECRET' line in %s for site '%s'",
                     cf->path, p->line, p->id, cf->credentials_file, p->id);
            return -1;
        }
    }
    return 0;
}

struct creds *
repl_conf_reload_creds(struct repl_conf *cf, char *err, size_t errlen)
{
    struct creds *old = cf->creds;

    cf->creds = creds_load(cf->credentials_file, err, errlen);
    if (cf->creds == NULL || validate_peer_keys(cf, err, errlen) != 0) {
        creds_destroy(cf->creds);
        cf->creds = old;
        return NULL;
    }
    return old;
}

/* --- lifetime ------------------------------------------------------------------------------ */

void
repl_conf_free(struct repl_conf *cf)
{
    size_t i;

    if (cf == NULL) {
        return;
    }
    for (i = 0; i < cf->npeers; i++) {
        free(cf->peers[i].id);
        free(cf->peers[i].url);
        free(cf->peers[i].host);
        free(cf->peers[i].ca_file);
    }
    free(cf->peers);
    creds_destroy(cf->creds);
    free(cf->path);
    free(cf->site_id);
    free(cf->redis_host);
    free(cf->upstream);
    free(cf->upstream_host);
    free(cf->upstream_ca_file);
    free(cf->region);
    free(cf->credentials_file);
    free(cf->peer_ca_file);
    free(cf->consumer);
    free(cf->log_level);
    free(cf->error_log);
    free(cf->pid_file);
    free(cf->metrics_file);
    for (i = 0; i < cf->nresync_buckets; i++) {
        free(cf->resync_buckets[i]);
    }
    free(cf->resync_buckets);
    free(cf->resync_proxy);
    free(cf->resync_command);
    free(cf->meta_bucket);
    free(cf);
}

struct repl_conf *
repl_conf_load(const char *path, char *err, size_t errlen)
{
    struct repl_conf *cf = xcalloc(1, sizeof(*cf));
    struct conf_file f;
    int rc;

    cf->path = xstrdup(path);
    conf_init(&f, repl_conf_cmds);
    rc = conf_parse_file(&f, path, cf, err, errlen);
    if (rc == 0) {
        rc = validate(cf, &f, err, errlen);
    }
    conf_deinit(&f);
    if (rc == 0) {
        cf->creds = creds_load(cf->credentials_file, err, errlen);
        rc = cf->creds == NULL ? -1 : validate_peer_keys(cf, err, errlen);
    }
    if (rc != 0) {
        repl_conf_free(cf);
        return NULL;
    }
    return cf;
}
