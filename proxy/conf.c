/*
 * conf.c - the proxy's directive table, defaults and cross-field validation.
 *
 *   proxy_conf_load(path)
 *     conf_parse_file()    one setter per line (table below), file:line errors
 *     validate()           table defaults, computed defaults (listen, upstream_region),
 *                          required directives, cross-field checks, readable files
 *     creds_load()         the credentials file (its own file:line errors)
 *
 * Adding a directive: one CONF_CMD line in proxy_conf_cmds, a field in struct proxy_conf
 * (conf.h), freeing it in conf_free() if it owns memory, and a commented entry in
 * proxy.conf.example (tests check that every directive appears there at its default).
 */
#include "conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/log.h"
#include "common/xalloc.h"

#define F(field) offsetof(struct proxy_conf, field)
#define KB 1024LL
#define MB (1024LL * 1024)
#define GB (1024LL * 1024 * 1024)
#define SEC 1000LL
#define DAY (86400LL * 1000)

#define DEFAULT_LISTEN_HOST "127.0.0.1"
#define DEFAULT_LISTEN_PORT "8080"

/* --- setters for the proxy's own value types ------------------------------------------- */

static int
is_host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

/* Port of 1 to 5 digits in 1..65535. */
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

enum authority_err { AUTH_OK = 0, AUTH_BAD_HOST, AUTH_BAD_PORT, AUTH_NO_PORT };

/*
 * Splits "host:port", "[v6]:port" (or without ":port" unless PORT_REQUIRED) of LEN bytes.
 * On success *HOST (without brackets) and *PORT (NULL when absent) are xmalloc'd.
 */
static enum authority_err
split_authority(const char *s, size_t len, int port_required, char **host, char **port)
{
    const char *hs, *he, *ps = NULL, *end = s + len, *p;
    char v6[64];
    struct in6_addr a6;

    if (len > 0 && s[0] == '[') {
        hs = s + 1;
        he = memchr(hs, ']', len - 1);
        if (he == NULL || (size_t)(he - hs) >= sizeof(v6) || he == hs) {
            return AUTH_BAD_HOST;
        }
        memcpy(v6, hs, (size_t)(he - hs));
        v6[he - hs] = '\0';
        if (inet_pton(AF_INET6, v6, &a6) != 1) {
            return AUTH_BAD_HOST;
        }
        if (he + 1 < end) {
            if (he[1] != ':') {
                return AUTH_BAD_HOST;
            }
            ps = he + 2;
        }
    } else {
        hs = s;
        he = memchr(s, ':', len);
        if (he == NULL) {
            he = end;
        } else {
            ps = he + 1;
        }
        if (he == hs) {
            return AUTH_BAD_HOST;
        }
        for (p = hs; p < he; p++) {
            if (!is_host_char(*p)) {
                return AUTH_BAD_HOST; /* a second ':' lands here: bare IPv6 needs [] */
            }
        }
    }
    if (ps == NULL && port_required) {
        return AUTH_NO_PORT;
    }
    if (ps != NULL && !valid_port(ps, (size_t)(end - ps))) {
        return AUTH_BAD_PORT;
    }
    *host = xstrndup(hs, (size_t)(he - hs));
    *port = ps ? xstrndup(ps, (size_t)(end - ps)) : NULL;
    return AUTH_OK;
}

static const char *
add_listen(struct proxy_conf *cf, const char *arg, int tls)
{
    char *host, *port;
    size_t i;

    if (split_authority(arg, strlen(arg), 1, &host, &port) != AUTH_OK) {
        return "expected HOST:PORT like 127.0.0.1:8080 or [::1]:8080";
    }
    for (i = 0; i < cf->nlistens; i++) {
        if (strcasecmp(cf->listens[i].host, host) == 0 && strcmp(cf->listens[i].port, port) == 0) {
            free(host);
            free(port);
            return conf_phrasef("'%s' is already listed", arg);
        }
    }
    cf->listens = xrealloc(cf->listens, (cf->nlistens + 1) * sizeof(cf->listens[0]));
    cf->listens[cf->nlistens].host = host;
    cf->listens[cf->nlistens].port = port;
    cf->listens[cf->nlistens].tls = tls;
    cf->nlistens++;
    return NULL;
}

static const char *
set_listen(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    (void)argc;
    return add_listen(obj, argv[0], 0);
}

static const char *
set_listen_tls(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    (void)argc;
    return add_listen(obj, argv[0], 1);
}

/* char *: a region name as SigV4 puts it in the credential scope ("us-east-1"). */
static const char *
set_region(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    char **field = (char **)((char *)obj + cmd->offset);
    const char *p;

    (void)argc;
    for (p = argv[0]; *p != '\0'; p++) {
        if (!is_host_char(*p)) {
            break;
        }
    }
    if (argv[0][0] == '\0' || *p != '\0') {
        return "expected a region name like us-east-1";
    }
    free(*field);
    *field = xstrdup(argv[0]);
    return NULL;
}

static const char *
set_virtual_host_domain(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    struct proxy_conf *cf = obj;
    const char *s = argv[0];
    size_t len = strlen(s), i;
    char *d;

    (void)cmd;
    (void)argc;
    if (len == 0 || s[0] == '.' || s[0] == '-' || s[len - 1] == '.' || strstr(s, "..") != NULL) {
        return "expected a domain name like s3.example.com";
    }
    for (i = 0; i < len; i++) {
        if (!is_host_char(s[i]) || s[i] == '_') {
            return "expected a domain name like s3.example.com";
        }
    }
    d = xstrdup(s);
    for (i = 0; i < len; i++) {
        if (d[i] >= 'A' && d[i] <= 'Z') {
            d[i] = (char)(d[i] - 'A' + 'a');
        }
    }
    for (i = 0; i < cf->nvirtual_host_domains; i++) {
        if (strcmp(cf->virtual_host_domains[i], d) == 0) {
            free(d);
            return conf_phrasef("'%s' is already listed", s);
        }
    }
    cf->virtual_host_domains = xrealloc(cf->virtual_host_domains,
                                        (cf->nvirtual_host_domains + 1) * sizeof(char *));
    cf->virtual_host_domains[cf->nvirtual_host_domains++] = d;
    return NULL;
}

/* The rule for NAME, created (all permissions off) if missing. */
static struct proxy_bucket_rule *
bucket_rule(struct proxy_conf *cf, const char *name)
{
    struct proxy_bucket_rule *r;
    size_t i;

    for (i = 0; i < cf->nbuckets; i++) {
        if (strcmp(cf->buckets[i].bucket, name) == 0) {
            return &cf->buckets[i];
        }
    }
    cf->buckets = xrealloc(cf->buckets, (cf->nbuckets + 1) * sizeof(cf->buckets[0]));
    r = &cf->buckets[cf->nbuckets++];
    memset(r, 0, sizeof(*r));
    r->bucket = xstrdup(name);
    return r;
}

/* "*" or letters, digits, '.', '_', '-' (S3 names plus legacy ones some stores accept). */
static int
valid_bucket(const char *s)
{
    const char *p;

    if (strcmp(s, "*") == 0) {
        return 1;
    }
    for (p = s; *p != '\0'; p++) {
        if (!is_host_char(*p)) {
            return 0;
        }
    }
    return p != s && p - s <= 255;
}

static const char *
set_public_read_bucket(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    (void)argc;
    if (!valid_bucket(argv[0])) {
        return "expected a bucket name or *";
    }
    bucket_rule(obj, argv[0])->public_read = 1;
    return NULL;
}

/* "http://host[:port]" or "https://..." with no path but "/". */
static const char *
set_upstream(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    struct proxy_conf *cf = obj;
    const char *s = argv[0], *auth, *tail;
    char *host, *port;
    size_t alen;
    int https;

    (void)cmd;
    (void)argc;
    if (strncasecmp(s, "http://", 7) == 0) {
        https = 0;
        auth = s + 7;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        https = 1;
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
        return "expected no path or query after host[:port]: requests go to the store's root";
    }
    switch (split_authority(auth, alen, 0, &host, &port)) {
    case AUTH_OK:
        break;
    case AUTH_BAD_PORT:
        return "expected a port from 1 to 65535 after the host";
    default:
        return "expected a host name or address after the scheme, like http://127.0.0.1:8000";
    }
    free(cf->upstream);
    free(cf->upstream_host);
    free(cf->upstream_port);
    cf->upstream_https = https;
    cf->upstream_host = host;
    cf->upstream_port = port ? port : xstrdup(https ? "443" : "80");
    cf->upstream = xmalloc(8 + alen + 1);
    memcpy(cf->upstream, https ? "https://" : "http://", https ? 8 : 7);
    memcpy(cf->upstream + (https ? 8 : 7), auth, alen);
    cf->upstream[(https ? 8 : 7) + alen] = '\0';
    return NULL;
}

static const struct conf_enum repl_modes[] = {
    {"off", REPL_OFF}, {"async", REPL_ASYNC}, {"sync", REPL_SYNC}, {NULL, 0}};

static int
valid_site_id(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > 32) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-')) {
            return 0;
        }
    }
    return 1;
}

static const char *
set_site_id(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    if (!valid_site_id(argv[0])) {
        return "expected a site id of 1 to 32 characters from a-z, 0-9 and '-'";
    }
    return conf_set_string(obj, cmd, argc, argv);
}

/* "site ID URL": one line per site of the deployment, this one included. */
static const char *
set_site(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    struct proxy_conf *cf = obj;
    struct proxy_site *st;
    size_t i;

    (void)cmd;
    (void)argc;
    if (!valid_site_id(argv[0])) {
        return "expected 'site ID URL' with an id of 1 to 32 characters from a-z, 0-9 and '-'";
    }
    if (strncmp(argv[1], "http://", 7) != 0 && strncmp(argv[1], "https://", 8) != 0) {
        return "expected 'site ID URL' with the URL of that site's s3tee proxy (http:// or "
               "https://)";
    }
    for (i = 0; i < cf->nsites; i++) {
        if (strcmp(cf->sites[i].id, argv[0]) == 0) {
            return conf_phrasef("site '%s' is a duplicate (first listed at line %d)", argv[0],
                                cf->sites[i].line);
        }
    }
    cf->sites = xrealloc(cf->sites, (cf->nsites + 1) * sizeof(cf->sites[0]));
    st = &cf->sites[cf->nsites++];
    st->id = xstrdup(argv[0]);
    st->url = xstrdup(argv[1]);
    st->line = conf_current_line();
    return NULL;
}

static const char *
set_redis(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    struct proxy_conf *cf = obj;
    char *host = NULL, *port = NULL;

    (void)cmd;
    (void)argc;
    if (split_authority(argv[0], strlen(argv[0]), 1, &host, &port) != AUTH_OK || port == NULL) {
        free(host);
        free(port);
        return "expected HOST:PORT of the site's Redis, like 127.0.0.1:6379";
    }
    free(cf->redis_host);
    cf->redis_host = host;
    cf->redis_port = atoi(port);
    free(port);
    return NULL;
}

/* "bucket_replication BUCKET MODE [SITE,SITE...]" */
static const char *
set_bucket_replication(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    struct proxy_conf *cf = obj;
    struct proxy_bucket_rule *r;
    size_t i;
    int mode = -1;
    char *list, *tok, *save = NULL;

    (void)cmd;
    if (!valid_bucket(argv[0])) {
        return "expected 'bucket_replication BUCKET off|async|sync [SITES]' with a bucket name "
               "or *";
    }
    for (i = 0; repl_modes[i].name != NULL; i++) {
        if (strcmp(argv[1], repl_modes[i].name) == 0) {
            mode = repl_modes[i].value;
        }
    }
    if (mode < 0) {
        return "expected 'bucket_replication BUCKET off|async|sync [SITES]'";
    }
    r = bucket_rule(cf, argv[0]);
    if (r->has_mode) {
        return conf_phrasef("bucket '%s' is a duplicate (first set at line %d)", argv[0], r->line);
    }
    r->has_mode = 1;
    r->mode = (enum repl_mode)mode;
    r->line = conf_current_line();
    if (argc == 3) {
        list = xstrdup(argv[2]);
        for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
            r->peers = xrealloc(r->peers, (r->npeers + 1) * sizeof(r->peers[0]));
            r->peers[r->npeers++] = xstrdup(tok);
        }
        free(list);
    }
    return NULL;
}

/*
 * "conflict_bucket NAME": a bucket of the local store (S3's rules: 3 to 63 of a-z, 0-9,
 * '.', '-', starting and ending with a letter or digit), or "" for none. The proxy names
 * it in unencoded paths, so nothing else is accepted.
 */
static const char *
set_conflict_bucket(void *obj, const struct conf_cmd *cmd, int argc, char **argv)
{
    struct proxy_conf *cf = obj;
    const char *s = argv[0];
    size_t n = strlen(s), i;

    (void)cmd;
    (void)argc;
    free(cf->conflict_bucket);
    cf->conflict_bucket = NULL;
    if (n == 0) {
        return NULL; /* off */
    }
    if (n < 3 || n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1])) {
        return "expected a bucket name of 3 to 63 characters from a-z, 0-9, '.' and '-', "
               "starting and ending with a letter or digit (or \"\" for none)";
    }
    for (i = 0; i < n; i++) {
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '.' ||
              s[i] == '-')) {
            return "expected a bucket name of 3 to 63 characters from a-z, 0-9, '.' and '-', "
                   "starting and ending with a letter or digit (or \"\" for none)";
        }
    }
    cf->conflict_bucket = xstrdup(s);
    return NULL;
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

/* --- the table ---------------------------------------------------------------------------- */

/* clang-format off */
static const struct conf_cmd proxy_conf_cmds[] = {
    /* front end */
    CONF_CMD("listen", set_listen, 0, .flags = CONF_REPEATABLE),
    CONF_CMD("listen_tls", set_listen_tls, 0, .flags = CONF_REPEATABLE),
    CONF_CMD("tls_certificate", conf_set_string, F(tls_certificate), .flags = CONF_PATH),
    CONF_CMD("tls_certificate_key", conf_set_string, F(tls_certificate_key), .flags = CONF_PATH),
    CONF_CMD("workers", conf_set_int, F(workers), .def = "0", .min = 0, .max = 256),
    CONF_CMD("max_connections", conf_set_int, F(max_connections),
             .def = "4096", .min = 1, .max = 1048576),
    CONF_CMD("max_header_bytes", conf_set_size, F(max_header_bytes),
             .def = "32k", .min = 1 * KB, .max = 1 * MB),
    CONF_CMD("max_header_count", conf_set_int, F(max_header_count),
             .def = "100", .min = 1, .max = 10000),
    CONF_CMD("max_request_line", conf_set_size, F(max_request_line),
             .def = "16k", .min = 256, .max = 1 * MB),
    CONF_CMD("client_header_timeout", conf_set_duration, F(client_header_timeout_ms),
             .def = "30s", .min = 1, .max = DAY),
    CONF_CMD("client_body_timeout", conf_set_duration, F(client_body_timeout_ms),
             .def = "60s", .min = 1, .max = DAY),
    CONF_CMD("client_body_min_rate", conf_set_size, F(client_body_min_rate),
             .def = "1k", .min = 0, .max = 1 * GB),
    CONF_CMD("client_idle_timeout", conf_set_duration, F(client_idle_timeout_ms),
             .def = "60s", .min = 1, .max = DAY),
    CONF_CMD("client_send_timeout", conf_set_duration, F(client_send_timeout_ms),
             .def = "60s", .min = 1, .max = DAY),
    CONF_CMD("max_inflight_body", conf_set_size, F(max_inflight_body),
             .def = "1m", .min = 64 * KB, .max = 1 * GB),
    CONF_CMD("h2_max_concurrent_streams", conf_set_int, F(h2_max_concurrent_streams),
             .def = "100", .min = 1, .max = 10000),
    CONF_CMD("max_xml_body", conf_set_size, F(max_xml_body),
             .def = "4m", .min = 64 * KB, .max = 1 * GB),
    CONF_CMD("h2_max_resets_per_second", conf_set_int, F(h2_max_resets_per_second),
             .def = "100", .min = 1, .max = 1000000),
    CONF_CMD("h2_max_resets_per_minute", conf_set_int, F(h2_max_resets_per_minute),
             .def = "1000", .min = 1, .max = 1000000),
    CONF_CMD("h2_max_pending_acks", conf_set_int, F(h2_max_pending_acks),
             .def = "100", .min = 1, .max = 1000000),
    CONF_CMD("h2_max_continuations", conf_set_int, F(h2_max_continuations),
             .def = "8", .min = 0, .max = 100000),

    /* S3 */
    CONF_CMD("region", set_region, F(region), .def = "us-east-1"),
    CONF_CMD("virtual_host_domain", set_virtual_host_domain, 0, .flags = CONF_REPEATABLE),
    CONF_CMD("max_clock_skew", conf_set_duration, F(max_clock_skew_ms),
             .def = "15m", .min = 1 * SEC, .max = DAY),
    CONF_CMD("credentials_file", conf_set_string, F(credentials_file), .flags = CONF_PATH),
    CONF_CMD("public_read_bucket", set_public_read_bucket, 0, .flags = CONF_REPEATABLE),

    /* upstream: the local S3 store */
    CONF_CMD("upstream", set_upstream, 0),
    CONF_CMD("upstream_region", set_region, F(upstream_region)),
    CONF_CMD("upstream_ca_file", conf_set_string, F(upstream_ca_file), .flags = CONF_PATH),
    CONF_CMD("upstream_tls_verify", conf_set_bool, F(upstream_tls_verify), .def = "on"),
    CONF_CMD("upstream_connect_timeout", conf_set_duration, F(upstream_connect_timeout_ms),
             .def = "5s", .min = 1, .max = DAY),
    CONF_CMD("upstream_first_byte_timeout", conf_set_duration, F(upstream_first_byte_timeout_ms),
             .def = "60s", .min = 1, .max = DAY),
    CONF_CMD("upstream_io_timeout", conf_set_duration, F(upstream_io_timeout_ms),
             .def = "60s", .min = 1, .max = DAY),
    CONF_CMD("upstream_max_connections", conf_set_int, F(upstream_max_connections),
             .def = "64", .min = 1, .max = 65536),
    CONF_CMD("upstream_splice", conf_set_bool, F(upstream_splice), .def = "on"),

    /* logs */
    CONF_CMD("access_log", conf_set_string, F(access_log), .def = "stderr"),
    CONF_CMD("error_log", set_error_log, F(error_log), .def = "stderr"),
    CONF_CMD("log_level", conf_set_enum_name, F(log_level), .def = "info", .choices = log_levels),
    CONF_CMD("pid_file", conf_set_string, F(pid_file)),

    /* replication */
    CONF_CMD("site_id", set_site_id, F(site_id)),
    CONF_CMD("site", set_site, 0, .flags = CONF_REPEATABLE, .min_args = 2, .max_args = 2),
    CONF_CMD("redis", set_redis, 0),
    CONF_CMD("redis_command_timeout", conf_set_duration, F(redis_command_timeout_ms),
             .def = "2s", .min = 1, .max = DAY),
    CONF_CMD("replication", conf_set_enum, F(replication), .def = "async", .choices = repl_modes),
    CONF_CMD("bucket_replication", set_bucket_replication, 0, .flags = CONF_REPEATABLE,
             .min_args = 2, .max_args = 3),
    CONF_CMD("max_clock_offset", conf_set_duration, F(max_clock_offset_ms), .def = "60s",
             .min = 1000, .max = DAY),
    CONF_CMD("lease_time", conf_set_duration, F(lease_ms), .def = "30s", .min = 100,
             .max = DAY),
    CONF_CMD("lease_wait", conf_set_duration, F(lease_wait_ms), .def = "5s", .min = 0,
             .max = DAY),
    CONF_CMD("site_ca_file", conf_set_string, F(site_ca_file), .flags = CONF_PATH),
    CONF_CMD("site_plain_http", conf_set_bool, F(site_plain_http), .def = "off"),
    CONF_CMD("bucket_op_timeout", conf_set_duration, F(bucket_op_timeout_ms), .def = "30s",
             .min = 100, .max = DAY),
    CONF_CMD("conflict_bucket", set_conflict_bucket, 0),

    CONF_END,
};
/* clang-format on */

/* --- validation ---------------------------------------------------------------------------- */

/* A file the proxy will read: must exist and be readable now. */
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

static void
fmt_size(int64_t v, char *out, size_t len)
{
    if (v % KB == 0) {
        snprintf(out, len, "%lldk", (long long)(v / KB));
    } else {
        snprintf(out, len, "%lld", (long long)v);
    }
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

static int
validate_replication(struct proxy_conf *cf, struct conf_file *f, char *err, size_t errlen)
{
    size_t i, j;

    if (cf->site_id == NULL) {
        static const char *const needs_site[] = {"site", "redis", "replication", "bucket_replication",
                                                 "conflict_bucket"};

        for (i = 0; i < sizeof(needs_site) / sizeof(needs_site[0]); i++) {
            if (conf_line_of(f, needs_site[i]) != 0) {
                return conf_errorf(f, conf_line_of(f, needs_site[i]), err, errlen,
                                   "%s: replication needs site_id (this site's id) as well",
                                   needs_site[i]);
            }
        }
        cf->replication = REPL_OFF; /* a plain proxy */
        return 0;
    }
    if (find_site(cf, cf->site_id) == NULL) {
        return conf_errorf(f, conf_line_of(f, "site_id"), err, errlen,
                           "site_id: '%s' is not among the sites listed with 'site ID URL' (list "
                           "every site of the deployment, this one included)",
                           cf->site_id);
    }
    /* bucket-level operations carry this site's key to the others: clear text only when
     * the operator says the network between the sites is trusted (this site's own URL is
     * never called, so its scheme does not matter) */
    for (i = 0; i < cf->nsites && !cf->site_plain_http; i++) {
        const struct proxy_site *st = &cf->sites[i];

        if (strcmp(st->id, cf->site_id) != 0 && strncmp(st->url, "http://", 7) == 0) {
            return conf_errorf(f, st->line, err, errlen,
                               "site: '%s' has a plain http:// URL (%s): bucket operations would "
                               "reach it unencrypted; use https:// or, on a trusted network "
                               "only, set 'site_plain_http yes'",
                               st->id, st->url);
        }
    }
    if (conf_require(f, "redis", err, errlen) != 0) {
        return -1;
    }
    if (cf->replication == REPL_SYNC) {
        return conf_errorf(f, conf_line_of(f, "replication"), err, errlen,
                           "replication: sync mode is not available yet; use async (acknowledge "
                           "after the local write) or off");
    }
    for (i = 0; i < cf->nbuckets; i++) {
        const struct proxy_bucket_rule *r = &cf->buckets[i];

        if (!r->has_mode) {
            continue;
        }
        if (r->mode == REPL_SYNC) {
            return conf_errorf(f, r->line, err, errlen,
                               "bucket_replication: sync mode is not available yet for bucket "
                               "'%s'; use async or off",
                               r->bucket);
        }
        for (j = 0; j < r->npeers; j++) {
            if (find_site(cf, r->peers[j]) == NULL) {
                return conf_errorf(f, r->line, err, errlen,
                                   "bucket_replication: unknown site '%s' for bucket '%s' (sites "
                                   "are declared with 'site ID URL')",
                                   r->peers[j], r->bucket);
            }
            if (strcmp(r->peers[j], cf->site_id) == 0) {
                return conf_errorf(f, r->line, err, errlen,
                                   "bucket_replication: '%s' is this site; list the sites bucket "
                                   "'%s' replicates to",
                                   r->peers[j], r->bucket);
            }
        }
    }
    return 0;
}

/* Every other site needs the key this site signs with there. */
static int
validate_peer_keys(const struct proxy_conf *cf, char *err, size_t errlen)
{
    size_t i;

    for (i = 0; cf->site_id != NULL && i < cf->nsites; i++) {
        const struct proxy_site *st = &cf->sites[i];

        if (strcmp(st->id, cf->site_id) != 0 &&
            creds_find_peer(cf->creds, slice_cstr(st->id)) == NULL) {
            snprintf(err, errlen,
                     "%s:%d: site: no 'peer %s ACCESS_KEY SECRET' line in %s for site '%s'",
                     cf->path, st->line, st->id, cf->credentials_file, st->id);
            return -1;
        }
    }
    return 0;
}

static int
validate(struct proxy_conf *cf, struct conf_file *f, char *err, size_t errlen)
{
    size_t i;
    int tls = 0;

    if (conf_set_defaults(f, cf, err, errlen) != 0) {
        return -1;
    }
    if (conf_require(f, "upstream", err, errlen) != 0 ||
        conf_require(f, "credentials_file", err, errlen) != 0) {
        return -1;
    }

    if (cf->nlistens == 0) {
        add_listen(cf, DEFAULT_LISTEN_HOST ":" DEFAULT_LISTEN_PORT, 0);
    }
    for (i = 0; i < cf->nlistens; i++) {
        tls |= cf->listens[i].tls;
    }
    if (tls && (cf->tls_certificate == NULL || cf->tls_certificate_key == NULL)) {
        return conf_errorf(f, conf_line_of(f, "listen_tls"), err, errlen, "listen_tls: requires %s",
                           cf->tls_certificate == NULL && cf->tls_certificate_key == NULL
                               ? "tls_certificate and tls_certificate_key"
                           : cf->tls_certificate == NULL ? "tls_certificate"
                                                         : "tls_certificate_key");
    }
    if (check_readable(f, "tls_certificate", cf->tls_certificate, err, errlen) != 0 ||
        check_readable(f, "tls_certificate_key", cf->tls_certificate_key, err, errlen) != 0 ||
        check_readable(f, "upstream_ca_file", cf->upstream_ca_file, err, errlen) != 0 ||
        check_readable(f, "site_ca_file", cf->site_ca_file, err, errlen) != 0) {
        return -1;
    }

    if (cf->max_request_line > cf->max_header_bytes) {
        char rl[32], hb[32];

        if (conf_line_of(f, "max_request_line") == 0) {
            cf->max_request_line = cf->max_header_bytes; /* the default yields to a smaller head */
        } else {
            fmt_size(cf->max_request_line, rl, sizeof(rl));
            fmt_size(cf->max_header_bytes, hb, sizeof(hb));
            return conf_errorf(f, conf_line_of(f, "max_request_line"), err, errlen,
                               "max_request_line: %s is larger than max_header_bytes (%s), which "
                               "includes the request line",
                               rl, hb);
        }
    }

    if (cf->upstream_region == NULL) {
        cf->upstream_region = xstrdup(cf->region);
    }
    return validate_replication(cf, f, err, errlen);
}

/* --- lifetime ------------------------------------------------------------------------------ */

static void
conf_free(struct proxy_conf *cf)
{
    size_t i;

    for (i = 0; i < cf->nlistens; i++) {
        free(cf->listens[i].host);
        free(cf->listens[i].port);
    }
    free(cf->listens);
    for (i = 0; i < cf->nvirtual_host_domains; i++) {
        free(cf->virtual_host_domains[i]);
    }
    free(cf->virtual_host_domains);
    for (i = 0; i < cf->nbuckets; i++) {
        size_t j;

        free(cf->buckets[i].bucket);
        for (j = 0; j < cf->buckets[i].npeers; j++) {
            free(cf->buckets[i].peers[j]);
        }
        free(cf->buckets[i].peers);
    }
    for (i = 0; i < cf->nsites; i++) {
        free(cf->sites[i].id);
        free(cf->sites[i].url);
    }
    free(cf->sites);
    free(cf->site_id);
    free(cf->redis_host);
    free(cf->buckets);
    creds_destroy(cf->creds);
    free(cf->path);
    free(cf->tls_certificate);
    free(cf->tls_certificate_key);
    free(cf->region);
    free(cf->credentials_file);
    free(cf->upstream);
    free(cf->upstream_host);
    free(cf->upstream_port);
    free(cf->upstream_region);
    free(cf->upstream_ca_file);
    free(cf->site_ca_file);
    free(cf->conflict_bucket);
    free(cf->access_log);
    free(cf->error_log);
    free(cf->log_level);
    free(cf->pid_file);
    free(cf);
}

struct proxy_conf *
proxy_conf_load(const char *path, char *err, size_t errlen)
{
    struct proxy_conf *cf = xcalloc(1, sizeof(*cf));
    struct conf_file f;
    int rc;

    cf->path = xstrdup(path);
    conf_init(&f, proxy_conf_cmds);
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
        conf_free(cf);
        return NULL;
    }
    cf->refs = 1;
    return cf;
}

struct proxy_conf *
proxy_conf_ref(struct proxy_conf *cf)
{
    __atomic_add_fetch(&cf->refs, 1, __ATOMIC_RELAXED);
    return cf;
}

void
proxy_conf_unref(struct proxy_conf *cf)
{
    if (cf != NULL && __atomic_sub_fetch(&cf->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        conf_free(cf);
    }
}

enum repl_mode
proxy_conf_repl_mode(const struct proxy_conf *cf, const char *bucket, size_t len)
{
    size_t i;

    if (cf->site_id == NULL || len == 0) {
        return REPL_OFF;
    }
    for (i = 0; i < cf->nbuckets; i++) {
        const struct proxy_bucket_rule *r = &cf->buckets[i];

        if (r->has_mode && strlen(r->bucket) == len && memcmp(r->bucket, bucket, len) == 0) {
            return r->mode;
        }
    }
    for (i = 0; i < cf->nbuckets; i++) {
        if (cf->buckets[i].has_mode && strcmp(cf->buckets[i].bucket, "*") == 0) {
            return cf->buckets[i].mode;
        }
    }
    return cf->replication;
}

const struct proxy_bucket_rule *
proxy_conf_bucket(const struct proxy_conf *cf, const char *bucket, size_t len)
{
    const struct proxy_bucket_rule *star = NULL;
    size_t i;

    for (i = 0; i < cf->nbuckets; i++) {
        const char *name = cf->buckets[i].bucket;

        if (strlen(name) == len && memcmp(name, bucket, len) == 0) {
            return &cf->buckets[i];
        }
        if (strcmp(name, "*") == 0) {
            star = &cf->buckets[i];
        }
    }
    return star;
}
