/* Unit tests for replicator/conf.c: defaults, directives, errors with file:line, the example. */
#include "replicator/conf.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static char dir[] = "/tmp/s3tee-rconf-XXXXXX";
static char conf_path[256];
static char err[1024];

static const char creds_text[] = "store AKSTORE secretstore\n"
                                 "peer b AKTOB secrettob\n"
                                 "peer c AKTOC secrettoc\n";

#define MINIMAL                                                                                    \
    "site_id a\n"                                                                                  \
    "redis 127.0.0.1:6379\n"                                                                       \
    "upstream http://127.0.0.1:8000\n"                                                             \
    "credentials_file creds.txt\n"                                                                 \
    "peer b https://127.0.0.1:9002\n"

static void
write_file(const char *name, const char *text, mode_t mode)
{
    char p[512];
    FILE *fp;

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    fp = fopen(p, "w");
    fputs(text, fp);
    fclose(fp);
    chmod(p, mode);
}

static void
remove_file(const char *name)
{
    char p[512];

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    unlink(p);
}

static struct repl_conf *
load(const char *text)
{
    write_file("replicator.conf", text, 0644);
    err[0] = '\0';
    return repl_conf_load(conf_path, err, sizeof(err));
}

/* Expects TEXT to be refused with "DIR/replicator.conf<SUFFIX>". */
static void
refused(const char *text, const char *suffix)
{
    struct repl_conf *cf = load(text);
    char want[1024];

    snprintf(want, sizeof(want), "%s%s", conf_path, suffix);
    ok(cf == NULL, "refused: %s", suffix);
    ok_str(err, want, "message: %s", suffix);
    repl_conf_free(cf);
}

static const char *
in_dir(const char *name)
{
    static char p[512];

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return p;
}

static int
streq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static void
check_defaults(const struct repl_conf *cf, const char *what)
{
    char consumer[300], host[256];

    ok(streq(cf->site_id, "a"), "%s: site_id", what);
    ok(streq(cf->redis_host, "127.0.0.1") && cf->redis_port == 6379, "%s: redis", what);
    ok(streq(cf->upstream, "http://127.0.0.1:8000") && streq(cf->upstream_host, "127.0.0.1:8000"),
       "%s: upstream and its host", what);
    ok(cf->upstream_ca_file == NULL && cf->upstream_tls_verify == 1, "%s: store TLS defaults",
       what);
    ok(streq(cf->region, "us-east-1"), "%s: region us-east-1", what);
    ok(streq(cf->credentials_file, in_dir("creds.txt")) && cf->creds != NULL,
       "%s: credentials resolved beside the config and loaded", what);
    ok(cf->npeers == 1 && streq(cf->peers[0].id, "b") &&
           streq(cf->peers[0].url, "https://127.0.0.1:9002") && cf->peers[0].plain == 0 &&
           cf->peers[0].ca_file == NULL && cf->peer_plain_http == 0 &&
           streq(cf->peers[0].host, "127.0.0.1:9002") && cf->peers[0].line == 5,
       "%s: one peer", what);
    ok(cf->peer_ca_file == NULL && cf->peer_tls_verify == 1, "%s: peer TLS verifies", what);
    ok(cf->concurrency == 32 && cf->batch == 64 && cf->block_ms == 1000,
       "%s: concurrency 32, batch 64, block 1000 ms", what);
    ok(cf->retry_base_ms == 1000 && cf->retry_max_ms == 60000 && cf->max_attempts == 10,
       "%s: retry 1s..60s, 10 attempts", what);
    ok(cf->claim_idle_ms == 60000 && cf->command_timeout_ms == 2000 &&
           cf->transfer_timeout_ms == 60000,
       "%s: claim_idle 60s, command_timeout 2s, transfer_timeout 60s", what);
    ok(cf->backlog_cap == 1000000 && cf->backlog_memory_cap == 80 && cf->trim_interval_ms == 10000,
       "%s: backlog_cap 1000000, backlog_memory_cap 80%%, trim_interval 10s", what);
    ok(streq(cf->meta_bucket, "s3tee-meta"), "%s: meta_bucket s3tee-meta", what);
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    snprintf(consumer, sizeof(consumer), "%s-%ld", host, (long)getpid());
    ok(streq(cf->consumer, consumer), "%s: consumer is hostname-pid (%s)", what, cf->consumer);
    ok(streq(cf->log_level, "info") && streq(cf->error_log, "stderr") && cf->pid_file == NULL &&
           cf->metrics_file == NULL,
       "%s: process defaults", what);
}

static void
test_defaults(void)
{
    struct repl_conf *cf = load(MINIMAL);

    ok(cf != NULL, "minimal config loads");
    if (cf == NULL) {
        printf("# %s\n", err);
        return;
    }
    ok(streq(cf->path, conf_path), "path kept");
    check_defaults(cf, "minimal");
    ok(creds_store(cf->creds) != NULL && streq(creds_store(cf->creds)->access_key, "AKSTORE"),
       "store key loaded");
    repl_conf_free(cf);
}

static void
test_every_directive(void)
{
    struct repl_conf *cf;

    write_file("ca.pem", "not really a CA\n", 0644);
    cf = load("site_id eu-west-1\n"
              "redis [::1]:6390\n"
              "upstream https://store.example.com/\n"
              "upstream_ca_file ca.pem\n"
              "upstream_tls_verify off\n"
              "region eu-west-1\n"
              "credentials_file creds2.txt\n"
              "peer b https://b.example.com:8443\n"
              "peer c http://[::1]:9003\n"
              "peer_ca_file ca.pem\n"
              "peer_tls_verify no\n"
              "peer_plain_http yes\n"
              "concurrency 4\n"
              "batch 7\n"
              "block_ms 250\n"
              "retry_base 100ms\n"
              "retry_max 2s\n"
              "max_attempts 3\n"
              "claim_idle 5s\n"
              "consumer replicator-1\n"
              "command_timeout 500ms\n"
              "transfer_timeout 10s\n"
              "log_level debug\n"
              "error_log /tmp/r.log\n"
              "pid_file /tmp/r.pid\n"
              "metrics_file /tmp/r.json\n");
    ok(cf == NULL, "creds2.txt missing: refused");
    write_file("creds2.txt", creds_text, 0600);
    cf = load("site_id eu-west-1\n"
              "redis [::1]:6390\n"
              "upstream https://store.example.com/\n"
              "upstream_ca_file ca.pem\n"
              "upstream_tls_verify off\n"
              "region eu-west-1\n"
              "credentials_file creds2.txt\n"
              "peer b https://b.example.com:8443\n"
              "peer c http://[::1]:9003\n"
              "peer_ca_file ca.pem\n"
              "peer_tls_verify no\n"
              "peer_plain_http yes\n"
              "concurrency 4\n"
              "batch 7\n"
              "block_ms 250\n"
              "retry_base 100ms\n"
              "retry_max 2s\n"
              "max_attempts 3\n"
              "claim_idle 5s\n"
              "consumer replicator-1\n"
              "command_timeout 500ms\n"
              "transfer_timeout 10s\n"
              "backlog_cap 0\n"
              "backlog_memory_cap 95\n"
              "trim_interval 500ms\n"
              "meta_bucket ops-meta\n"
              "log_level debug\n"
              "error_log /tmp/r.log\n"
              "pid_file /tmp/r.pid\n"
              "metrics_file /tmp/r.json\n");
    ok(cf != NULL, "every directive: loads");
    if (cf == NULL) {
        printf("# %s\n", err);
        return;
    }
    ok(streq(cf->site_id, "eu-west-1") && streq(cf->redis_host, "::1") && cf->redis_port == 6390,
       "site_id, redis with IPv6");
    ok(streq(cf->upstream, "https://store.example.com") &&
           streq(cf->upstream_host, "store.example.com"),
       "upstream: trailing slash dropped, host without port");
    ok(streq(cf->upstream_ca_file, in_dir("ca.pem")) && cf->upstream_tls_verify == 0,
       "upstream CA resolved, verify off");
    ok(streq(cf->region, "eu-west-1") && streq(cf->credentials_file, in_dir("creds2.txt")),
       "region, credentials_file");
    ok(cf->npeers == 2 && streq(cf->peers[0].host, "b.example.com:8443") &&
           streq(cf->peers[1].url, "http://[::1]:9003") && streq(cf->peers[1].host, "[::1]:9003") &&
           cf->peers[1].line == 9 && cf->peers[1].plain == 1 && cf->peer_plain_http == 1,
       "two peers, IPv6 host kept in brackets");
    ok(streq(cf->peer_ca_file, in_dir("ca.pem")) && cf->peer_tls_verify == 0, "peer TLS");
    ok(cf->concurrency == 4 && cf->batch == 7 && cf->block_ms == 250, "concurrency, batch, block");
    ok(cf->retry_base_ms == 100 && cf->retry_max_ms == 2000 && cf->max_attempts == 3,
       "retry settings");
    ok(cf->claim_idle_ms == 5000 && streq(cf->consumer, "replicator-1") &&
           cf->command_timeout_ms == 500 && cf->transfer_timeout_ms == 10000,
       "claim_idle, consumer, timeouts");
    ok(cf->backlog_cap == 0 && cf->backlog_memory_cap == 95 && cf->trim_interval_ms == 500 &&
           streq(cf->meta_bucket, "ops-meta"),
       "backlog caps, trim interval, meta bucket");
    ok(streq(cf->log_level, "debug") && streq(cf->error_log, "/tmp/r.log") &&
           streq(cf->pid_file, "/tmp/r.pid") && streq(cf->metrics_file, "/tmp/r.json"),
       "process settings");
    repl_conf_free(cf);
    remove_file("creds2.txt");
    remove_file("ca.pem");
}

static void
test_errors(void)
{
    char want[1024];

    /* required */
    refused("redis 127.0.0.1:1\nupstream http://x\ncredentials_file creds.txt\npeer b http://y\n",
            ": site_id is required");
    refused("site_id a\nupstream http://x\ncredentials_file creds.txt\npeer b http://y\n",
            ": redis is required");
    refused("site_id a\nredis 127.0.0.1:1\ncredentials_file creds.txt\npeer b http://y\n",
            ": upstream is required");
    refused("site_id a\nredis 127.0.0.1:1\nupstream http://x\npeer b http://y\n",
            ": credentials_file is required");
    refused("site_id a\nredis 127.0.0.1:1\nupstream http://x\ncredentials_file creds.txt\n",
            ": peer is required (one 'peer SITE_ID URL' line per other site)");

    /* values */
    refused(MINIMAL "bogus 1\n", ":6: unknown directive 'bogus'");
    refused("site_id A_B\n",
            ":1: site_id: expected a site id of 1 to 32 characters from a-z, 0-9 and '-', got "
            "'A_B'");
    refused("site_id aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
            ":1: site_id: expected a site id of 1 to 32 characters from a-z, 0-9 and '-', got "
            "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'");
    refused(MINIMAL "site_id b\n", ":6: site_id: is a duplicate (first set at line 1)");
    refused("redis localhost\n",
            ":1: redis: expected HOST:PORT of the site's Redis, like 127.0.0.1:6379, got "
            "'localhost'");
    refused("redis 127.0.0.1:70000\n",
            ":1: redis: expected HOST:PORT of the site's Redis, like 127.0.0.1:6379, got "
            "'127.0.0.1:70000'");
    refused("upstream ftp://x\n",
            ":1: upstream: expected a URL starting with http:// or https://, got 'ftp://x'");
    refused("upstream http://x/path\n",
            ":1: upstream: expected no path or query after host[:port], got 'http://x/path'");
    refused("upstream http://x:0\n",
            ":1: upstream: expected a port from 1 to 65535 after the host, got 'http://x:0'");
    refused("upstream http://u@x\n",
            ":1: upstream: expected no user name in the URL (keys belong in credentials_file), got "
            "'http://u@x'");
    refused("upstream_tls_verify maybe\n",
            ":1: upstream_tls_verify: expected on or off, got 'maybe'");
    refused("region \"us east\"\n",
            ":1: region: expected a region name like us-east-1, got 'us east'");
    refused(MINIMAL "concurrency 0\n",
            ":6: concurrency: expected an integer from 1 to 4096, got '0'");
    refused(MINIMAL "batch many\n", ":6: batch: expected an integer from 1 to 10000, got 'many'");
    refused(MINIMAL "block_ms 1s\n", ":6: block_ms: expected an integer from 1 to 60000, got '1s'");
    refused(MINIMAL "transfer_timeout soon\n",
            ":6: transfer_timeout: expected a duration like 5s or 250ms, got 'soon'");
    refused(MINIMAL "max_attempts 0\n",
            ":6: max_attempts: expected an integer from 1 to 1000000, got '0'");
    refused(MINIMAL "consumer \"a b\"\n",
            ":6: consumer: expected a consumer name of printable characters without spaces, got "
            "'a b'");
    refused(MINIMAL "log_level loud\n",
            ":6: log_level: expected one of error, warn, info, debug, got 'loud'");
    refused(MINIMAL "error_log off\n",
            ":6: error_log: expected a file path or stderr (errors are always logged), got 'off'");
    refused(MINIMAL "retry_base 10s\nretry_max 5s\n",
            ":7: retry_max: must not be below retry_base");
    refused(MINIMAL "retry_base 2m\n", ":6: retry_max: must not be below retry_base");

    /* peers */
    refused(MINIMAL "peer b http://127.0.0.1:9\n",
            ":6: peer: peer 'b' is a duplicate (first listed at line 5)");
    refused(MINIMAL "peer a http://127.0.0.1:9\n",
            ":6: peer: 'a' is this site (site_id); list the other sites");
    refused("peer a http://127.0.0.1:9\n" MINIMAL,
            ":1: peer: 'a' is this site (site_id); list the other sites");
    refused(MINIMAL "peer B_2 http://127.0.0.1:9\n",
            ":6: peer: expected 'peer SITE_ID URL [CA_FILE]' with a site id of 1 to 32 characters from a-z, "
            "0-9 and '-', got 'B_2 http://127.0.0.1:9'");
    refused(MINIMAL "peer c 127.0.0.1:9\n",
            ":6: peer: expected a URL starting with http:// or https:// (the URL of site 'c''s "
            "s3tee proxy), got 'c 127.0.0.1:9'");
    refused(MINIMAL "peer c\n", ":6: peer: expected 2 to 3 values, got 'c'");
    snprintf(want, sizeof(want),
             ":6: peer: no 'peer d ACCESS_KEY SECRET' line in %s/creds.txt for site 'd'", dir);
    refused(MINIMAL "peer d https://127.0.0.1:9\n", want);

    /* files */
    snprintf(want, sizeof(want),
             ":6: upstream_ca_file: cannot read '%s/nope.pem': No such file or directory", dir);
    refused(MINIMAL "upstream_ca_file nope.pem\n", want);
    snprintf(want, sizeof(want),
             ":6: peer_ca_file: cannot read '%s/nope.pem': No such file or directory", dir);
    refused(MINIMAL "peer_ca_file nope.pem\n", want);
    write_file("creds.txt", creds_text, 0644);
    {
        struct repl_conf *cf = load(MINIMAL);

        ok(cf == NULL && strstr(err, "permissions 0644 are too open") != NULL,
           "a credentials file others can read is refused: %s", err);
        repl_conf_free(cf);
    }
    write_file("creds.txt", "peer b AKTOB secrettob\n", 0600);
    {
        struct repl_conf *cf = load(MINIMAL);

        ok(cf == NULL && strstr(err, "no 'store' line") != NULL,
           "a credentials file without the store key is refused: %s", err);
        repl_conf_free(cf);
    }
    write_file("creds.txt", creds_text, 0600);
}

/* Peers over TLS by default: http:// needs peer_plain_http; a per-peer CA overrides. */
static void
test_peer_tls(void)
{
    struct repl_conf *cf;
    char want[1024];

    refused(MINIMAL "peer c http://10.0.0.3:8080\n",
            ":6: peer: 'c' has a plain http:// URL (http://10.0.0.3:8080): replica writes would "
            "cross the network unencrypted; use https:// or, on a trusted network only, set "
            "'peer_plain_http yes'");
    refused(MINIMAL "peer c HTTP://10.0.0.3\n",
            ":6: peer: 'c' has a plain http:// URL (HTTP://10.0.0.3): replica writes would "
            "cross the network unencrypted; use https:// or, on a trusted network only, set "
            "'peer_plain_http yes'");
    refused(MINIMAL "peer_plain_http no\npeer c http://10.0.0.3\n",
            ":7: peer: 'c' has a plain http:// URL (http://10.0.0.3): replica writes would "
            "cross the network unencrypted; use https:// or, on a trusted network only, set "
            "'peer_plain_http yes'");
    refused(MINIMAL "peer_plain_http maybe\n",
            ":6: peer_plain_http: expected on or off, got 'maybe'");

    cf = load(MINIMAL "peer c http://10.0.0.3\npeer_plain_http yes\n");
    ok(cf != NULL && cf->npeers == 2 && cf->peers[1].plain == 1 && cf->peer_plain_http == 1,
       "peer_plain_http yes (after the peer line) allows http:// %s", cf ? "" : err);
    repl_conf_free(cf);

    write_file("c-ca.pem", "not really a CA\n", 0644);
    cf = load(MINIMAL "peer c https://10.0.0.3 c-ca.pem\n");
    ok(cf != NULL && streq(cf->peers[1].ca_file, in_dir("c-ca.pem")) &&
           cf->peers[0].ca_file == NULL,
       "a per-peer CA_FILE is resolved beside the config %s", cf ? "" : err);
    repl_conf_free(cf);
    snprintf(want, sizeof(want), ":6: peer: cannot read '%s/none.pem': No such file or directory",
             dir);
    refused(MINIMAL "peer c https://10.0.0.3 none.pem\n", want);
    refused(MINIMAL "peer_plain_http yes\npeer c http://10.0.0.3 c-ca.pem\n",
            ":7: peer: 'c' has a CA_FILE but a plain http:// URL");
    remove_file("c-ca.pem");
}

/* SIGHUP's reload: a rotated 'peer' key replaces the old; a bad file changes nothing. */
static void
test_reload_creds(void)
{
    struct repl_conf *cf = load(MINIMAL);
    struct creds *old;

    ok(cf != NULL, "reload: loads %s", cf ? "" : err);
    if (cf == NULL) {
        return;
    }
    write_file("creds.txt", "store AKSTORE secretstore\npeer b AKTOB2 newsecrettob\n", 0600);
    old = repl_conf_reload_creds(cf, err, sizeof(err));
    ok(old != NULL && creds_find_peer(old, SLICE_LIT("b")) != NULL &&
           streq(creds_find_peer(old, SLICE_LIT("b"))->access_key, "AKTOB"),
       "reload: the previous list is handed back");
    ok(streq(creds_find_peer(cf->creds, SLICE_LIT("b"))->access_key, "AKTOB2") &&
           streq(creds_find_peer(cf->creds, SLICE_LIT("b"))->secret, "newsecrettob"),
       "reload: the new peer key is in place");
    creds_destroy(old);

    write_file("creds.txt", "store AKSTORE secretstore\npeer c AKTOC secrettoc\n", 0600);
    old = repl_conf_reload_creds(cf, err, sizeof(err));
    ok(old == NULL && strstr(err, ":5: peer: no 'peer b ACCESS_KEY SECRET' line in") != NULL,
       "reload: a file without a peer's key is refused: %s", err);
    ok(streq(creds_find_peer(cf->creds, SLICE_LIT("b"))->access_key, "AKTOB2"),
       "reload: refused, the running keys stay");

    write_file("creds.txt", "store AKSTORE secretstore\npeer b AKTOB3 x\n", 0640);
    old = repl_conf_reload_creds(cf, err, sizeof(err));
    ok(old == NULL && strstr(err, "creds.txt: permissions 0640 are too open; run chmod 600 ") !=
                          NULL,
       "reload: a group-readable file is refused, naming file and mode: %s", err);
    ok(streq(creds_find_peer(cf->creds, SLICE_LIT("b"))->access_key, "AKTOB2"),
       "reload: refused, the running keys stay");
    repl_conf_free(cf);
    write_file("creds.txt", creds_text, 0600);
}

/* Reads the repository's replicator.conf.example (NULL if missing). */
static char *
read_example(void)
{
    FILE *fp = fopen("replicator.conf.example", "r");
    char *buf;
    long n;

    if (fp == NULL) {
        return NULL;
    }
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = calloc(1, (size_t)n + 1);
    if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        buf[0] = '\0';
    }
    fclose(fp);
    return buf;
}

/* 1 if TEXT has a line exactly LINE. */
static int
has_line(const char *text, const char *line)
{
    size_t len = strlen(line);
    const char *p = text;

    while ((p = strstr(p, line)) != NULL) {
        if ((p == text || p[-1] == '\n') && (p[len] == '\n' || p[len] == '\0')) {
            return 1;
        }
        p += len;
    }
    return 0;
}

/* Uncomments the first "# NAME ..." line of TEXT (in place). */
static void
uncomment(char *text, const char *name)
{
    char pat[64];
    char *p;

    snprintf(pat, sizeof(pat), "\n# %s ", name);
    p = strstr(text, pat);
    if (p != NULL) {
        memmove(p + 1, p + 3, strlen(p + 3) + 1);
    }
}

static void
test_example(void)
{
    char *text = read_example(), line[256];
    struct repl_conf *cf;
    size_t i, missing = 0;

    ok(text != NULL, "replicator.conf.example found (tests run from the repository root)");
    if (text == NULL) {
        return;
    }
    for (i = 0; repl_conf_cmds[i].name != NULL; i++) {
        const struct conf_cmd *c = &repl_conf_cmds[i];

        if (c->def != NULL) {
            snprintf(line, sizeof(line), "# %s %s", c->name, c->def);
        } else {
            snprintf(line, sizeof(line), "# %s ", c->name);
        }
        if (c->def != NULL ? !has_line(text, line) : strstr(text, line) == NULL) {
            printf("# replicator.conf.example lacks '%s'\n", line);
            missing++;
        }
    }
    ok(missing == 0, "every directive is in replicator.conf.example, at its default");
    ok(has_line(text, "# consumer HOSTNAME-PID"), "computed default of consumer shown");
    write_file("replicator.conf", text, 0644);
    cf = repl_conf_load(conf_path, err, sizeof(err));
    ok(cf == NULL && strstr(err, "site_id is required") != NULL,
       "the example as shipped names what is required: %s", err);
    repl_conf_free(cf);
    /* the required lines, uncommented, give a valid file at every default */
    uncomment(text, "site_id");
    uncomment(text, "redis");
    uncomment(text, "upstream");
    uncomment(text, "credentials_file");
    uncomment(text, "peer");
    write_file("replicator.conf", text, 0644);
    cf = repl_conf_load(conf_path, err, sizeof(err));
    ok(cf != NULL, "the example with its required lines uncommented loads: %s", cf ? "" : err);
    if (cf != NULL) {
        ok(cf->concurrency == 32 && cf->batch == 64 && cf->max_attempts == 10 &&
               cf->peer_tls_verify == 1 && streq(cf->region, "us-east-1"),
           "example: defaults");
        ok(cf->npeers == 1 && streq(cf->peers[0].host, "s3tee.site-b.example.com"),
           "example: the peer line");
    }
    repl_conf_free(cf);
    free(text);
}

int
main(void)
{
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(conf_path, sizeof(conf_path), "%s/replicator.conf", dir);
    write_file("creds.txt", creds_text, 0600);

    test_defaults();
    test_every_directive();
    test_errors();
    test_peer_tls();
    test_reload_creds();
    test_example();

    remove_file("replicator.conf");
    remove_file("creds.txt");
    rmdir(dir);
    return done_testing();
}
