/* Unit tests for proxy/conf.c: defaults, every directive, validation messages, the example. */
#include "proxy/conf.c"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static char dir[] = "/tmp/s3tee-pconf-XXXXXX";
static char conf_path[256];
static char err[1024];

static const char creds_text[] = "client AKCLIENT secretc *\n"
                                 "store AKSTORE secrets\n";

#define MINIMAL "upstream http://127.0.0.1:8000\ncredentials_file creds.txt\n"

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

/* Writes TEXT as DIR/proxy.conf and loads it. */
static struct proxy_conf *
load(const char *text)
{
    write_file("proxy.conf", text, 0644);
    err[0] = '\0';
    return proxy_conf_load(conf_path, err, sizeof(err));
}

/* Expects TEXT to be refused with "DIR/proxy.conf<SUFFIX>". */
static void
refused(const char *text, const char *suffix)
{
    struct proxy_conf *cf = load(text);
    char want[1024];

    snprintf(want, sizeof(want), "%s%s", conf_path, suffix);
    ok(cf == NULL, "refused: %s", suffix);
    ok_str(err, want, "message: %s", suffix);
    proxy_conf_unref(cf);
}

/* "DIR/NAME" in a static buffer. */
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
check_defaults(const struct proxy_conf *cf, const char *what)
{
    ok(cf->nlistens == 1 && streq(cf->listens[0].host, "127.0.0.1") &&
           streq(cf->listens[0].port, "8080") && cf->listens[0].tls == 0,
       "%s: listen 127.0.0.1:8080", what);
    ok(cf->tls_certificate == NULL && cf->tls_certificate_key == NULL, "%s: no TLS files", what);
    ok(cf->workers == 0 && cf->max_connections == 4096, "%s: workers 0, max_connections 4096",
       what);
    ok(cf->max_header_bytes == 32768 && cf->max_header_count == 100 &&
           cf->max_request_line == 16384,
       "%s: header limits 32k, 100, 16k", what);
    ok(cf->client_header_timeout_ms == 30000 && cf->client_body_timeout_ms == 60000 &&
           cf->client_idle_timeout_ms == 60000 && cf->client_send_timeout_ms == 60000,
       "%s: client timeouts 30s/60s/60s/60s", what);
    ok(cf->max_inflight_body == 1048576 && cf->h2_max_concurrent_streams == 100,
       "%s: max_inflight_body 1m, h2 streams 100", what);
    ok(streq(cf->region, "us-east-1") && cf->nvirtual_host_domains == 0 &&
           cf->max_clock_skew_ms == 900000,
       "%s: region us-east-1, no vhost domains, skew 15m", what);
    ok(streq(cf->credentials_file, in_dir("creds.txt")) && cf->creds != NULL &&
           creds_store(cf->creds) != NULL && streq(creds_store(cf->creds)->access_key, "AKSTORE"),
       "%s: credentials resolved and loaded", what);
    ok(cf->nbuckets == 0, "%s: no bucket rules", what);
    ok(streq(cf->upstream, "http://127.0.0.1:8000") && streq(cf->upstream_host, "127.0.0.1") &&
           streq(cf->upstream_port, "8000") && cf->upstream_https == 0,
       "%s: upstream", what);
    ok(streq(cf->upstream_region, "us-east-1") && cf->upstream_ca_file == NULL &&
           cf->upstream_tls_verify == 1,
       "%s: upstream region, CA, verify", what);
    ok(cf->upstream_connect_timeout_ms == 5000 && cf->upstream_first_byte_timeout_ms == 60000 &&
           cf->upstream_io_timeout_ms == 60000 && cf->upstream_max_connections == 64,
       "%s: upstream timeouts 5s/60s/60s, 64 connections", what);
    ok(streq(cf->access_log, "stderr") && streq(cf->error_log, "stderr") &&
           streq(cf->log_level, "info") && cf->pid_file == NULL,
       "%s: logs", what);
    ok(cf->refs == 1, "%s: refs 1", what);
}

static void
test_defaults(void)
{
    struct proxy_conf *cf = load(MINIMAL);

    ok(cf != NULL, "minimal config loads");
    if (cf == NULL) {
        printf("# %s\n", err);
        return;
    }
    ok(streq(cf->path, conf_path), "path kept");
    check_defaults(cf, "minimal");
    proxy_conf_unref(cf);
}

static void
test_every_directive(void)
{
    static const char text[] =
        "# every directive, none at its default\n"
        "listen 0.0.0.0:80\n"
        "listen [::1]:8081\n"
        "listen_tls [::]:443\n"
        "listen_tls localhost:8443\n"
        "tls_certificate tls/cert.pem\n"
        "tls_certificate_key \"tls/key file.pem\"\n"
        "workers 8\n"
        "max_connections 100\n"
        "max_header_bytes 64k\n"
        "max_header_count 50\n"
        "max_request_line 8k\n"
        "client_header_timeout 10s\n"
        "client_body_timeout 2m\n"
        "client_idle_timeout 500ms\n"
        "client_send_timeout 1h\n"
        "max_inflight_body 4m\n"
        "h2_max_concurrent_streams 32\n"
        "region eu-west-1\n"
        "virtual_host_domain s3.Example.com\n"
        "virtual_host_domain s3.internal\n"
        "max_clock_skew 5m\n"
        "credentials_file creds.txt\n"
        "public_read_bucket photos\n"
        "public_read_bucket *\n"
        "upstream https://store.local:9000/\n"
        "upstream_region store-1\n"
        "upstream_ca_file /etc/hostname\n"
        "upstream_tls_verify off\n"
        "upstream_connect_timeout 250ms\n"
        "upstream_first_byte_timeout 2m\n"
        "upstream_io_timeout 30s\n"
        "upstream_max_connections 16\n"
        "access_log /var/log/s3tee/access.log\n"
        "error_log logs/error.log\n"
        "log_level debug\n"
        "pid_file /run/s3tee.pid\n";
    struct proxy_conf *cf;
    char p[512];

    snprintf(p, sizeof(p), "%s/tls", dir);
    mkdir(p, 0700);
    write_file("tls/cert.pem", "cert\n", 0644);
    write_file("tls/key file.pem", "key\n", 0600);
    cf = load(text);
    ok(cf != NULL, "config with every directive loads");
    if (cf == NULL) {
        printf("# %s\n", err);
        return;
    }
    ok(cf->nlistens == 4, "four listen addresses");
    ok(streq(cf->listens[0].host, "0.0.0.0") && streq(cf->listens[0].port, "80") &&
           !cf->listens[0].tls,
       "listen IPv4");
    ok(streq(cf->listens[1].host, "::1") && streq(cf->listens[1].port, "8081") &&
           !cf->listens[1].tls,
       "listen IPv6 in brackets");
    ok(streq(cf->listens[2].host, "::") && streq(cf->listens[2].port, "443") &&
           cf->listens[2].tls,
       "listen_tls IPv6 any");
    ok(streq(cf->listens[3].host, "localhost") && cf->listens[3].tls, "listen_tls by name");
    ok(streq(cf->tls_certificate, in_dir("tls/cert.pem")), "tls_certificate resolved");
    ok(streq(cf->tls_certificate_key, in_dir("tls/key file.pem")),
       "tls_certificate_key quoted and resolved");
    ok(cf->workers == 8 && cf->max_connections == 100, "workers, max_connections");
    ok(cf->max_header_bytes == 65536 && cf->max_header_count == 50 &&
           cf->max_request_line == 8192,
       "max_header_bytes, max_header_count, max_request_line");
    ok(cf->client_header_timeout_ms == 10000 && cf->client_body_timeout_ms == 120000 &&
           cf->client_idle_timeout_ms == 500 && cf->client_send_timeout_ms == 3600000,
       "client timeouts");
    ok(cf->max_inflight_body == 4194304 && cf->h2_max_concurrent_streams == 32,
       "max_inflight_body, h2_max_concurrent_streams");
    ok(streq(cf->region, "eu-west-1"), "region");
    ok(cf->nvirtual_host_domains == 2 && streq(cf->virtual_host_domains[0], "s3.example.com") &&
           streq(cf->virtual_host_domains[1], "s3.internal"),
       "virtual_host_domain repeatable, lowercased");
    ok(cf->max_clock_skew_ms == 300000, "max_clock_skew");
    ok(cf->nbuckets == 2 && proxy_conf_bucket(cf, "photos", 6)->public_read,
       "public_read_bucket");
    ok(streq(cf->upstream, "https://store.local:9000") && cf->upstream_https &&
           streq(cf->upstream_host, "store.local") && streq(cf->upstream_port, "9000"),
       "upstream https, trailing / dropped");
    ok(streq(cf->upstream_region, "store-1"), "upstream_region");
    ok(streq(cf->upstream_ca_file, "/etc/hostname"), "upstream_ca_file absolute");
    ok(cf->upstream_tls_verify == 0, "upstream_tls_verify off");
    ok(cf->upstream_connect_timeout_ms == 250 && cf->upstream_first_byte_timeout_ms == 120000 &&
           cf->upstream_io_timeout_ms == 30000 && cf->upstream_max_connections == 16,
       "upstream timeouts and connections");
    ok(streq(cf->access_log, "/var/log/s3tee/access.log") && streq(cf->error_log, "logs/error.log"),
       "access_log, error_log (log paths not resolved)");
    ok(streq(cf->log_level, "debug") && streq(cf->pid_file, "/run/s3tee.pid"),
       "log_level, pid_file");
    proxy_conf_unref(cf);

    cf = load(MINIMAL "listen_tls 127.0.0.1:8443\ntls_certificate tls/cert.pem\n"
                      "tls_certificate_key \"tls/key file.pem\"\n");
    ok(cf != NULL && cf->nlistens == 1 && cf->listens[0].tls,
       "listen_tls alone: no default plain listen added");
    proxy_conf_unref(cf);
    cf = load(MINIMAL "region ap-south-2\naccess_log off\n");
    ok(cf != NULL && streq(cf->upstream_region, "ap-south-2") && streq(cf->access_log, "off"),
       "upstream_region defaults to region; access_log off");
    proxy_conf_unref(cf);

    remove_file("tls/cert.pem");
    remove_file("tls/key file.pem");
    rmdir(p);
}

static void
test_required_and_tls(void)
{
    char want[1024];
    struct proxy_conf *cf;

    refused("credentials_file creds.txt\n", ": upstream is required");
    refused("upstream http://127.0.0.1:8000\n", ": credentials_file is required");
    refused("", ": upstream is required");
    refused("# nothing but comments\n\n", ": upstream is required");

    refused(MINIMAL "listen 127.0.0.1:80\nlisten_tls 0.0.0.0:443\nlisten_tls 0.0.0.0:444\n",
            ":4: listen_tls: requires tls_certificate and tls_certificate_key");
    write_file("cert.pem", "c\n", 0644);
    write_file("key.pem", "k\n", 0600);
    refused(MINIMAL "listen_tls 0.0.0.0:443\ntls_certificate cert.pem\n",
            ":3: listen_tls: requires tls_certificate_key");
    refused(MINIMAL "listen_tls 0.0.0.0:443\ntls_certificate_key key.pem\n",
            ":3: listen_tls: requires tls_certificate");
    snprintf(want, sizeof(want),
             ":4: tls_certificate: cannot read '%s/missing.pem': No such file or directory", dir);
    refused(MINIMAL "listen_tls 0.0.0.0:443\ntls_certificate missing.pem\n"
                    "tls_certificate_key key.pem\n",
            want);
    snprintf(want, sizeof(want),
             ":5: tls_certificate_key: cannot read '%s/nokey.pem': No such file or directory",
             dir);
    refused(MINIMAL "listen_tls 0.0.0.0:443\ntls_certificate cert.pem\n"
                    "tls_certificate_key nokey.pem\n",
            want);
    snprintf(want, sizeof(want),
             ":3: upstream_ca_file: cannot read '%s/ca.pem': No such file or directory", dir);
    refused(MINIMAL "upstream_ca_file ca.pem\n", want);
    cf = load(MINIMAL "listen_tls 0.0.0.0:443\ntls_certificate cert.pem\n"
                      "tls_certificate_key key.pem\nupstream_ca_file cert.pem\n");
    ok(cf != NULL && streq(cf->tls_certificate, in_dir("cert.pem")) &&
           streq(cf->tls_certificate_key, in_dir("key.pem")) &&
           streq(cf->upstream_ca_file, in_dir("cert.pem")),
       "TLS files resolved against the config's directory");
    proxy_conf_unref(cf);
    remove_file("cert.pem");
    remove_file("key.pem");
}

#define BAD_SCHEME "expected a URL starting with http:// or https://"
#define BAD_HOST "expected a host name or address after the scheme, like http://127.0.0.1:8000"
#define BAD_PORT "expected a port from 1 to 65535 after the host"
#define BAD_PATH "expected no path or query after host[:port]: requests go to the store's root"

static void
test_upstream_urls(void)
{
    static const struct {
        const char *url, *url_want, *host, *port;
        int https;
    } good[] = {
        {"http://127.0.0.1:8000", "http://127.0.0.1:8000", "127.0.0.1", "8000", 0},
        {"http://127.0.0.1:8000/", "http://127.0.0.1:8000", "127.0.0.1", "8000", 0},
        {"HTTP://Store.local", "http://Store.local", "Store.local", "80", 0},
        {"https://s3.local", "https://s3.local", "s3.local", "443", 1},
        {"https://[::1]:9000/", "https://[::1]:9000", "::1", "9000", 1},
        {"http://[fe80::1]", "http://[fe80::1]", "fe80::1", "80", 0},
    };
    static const struct {
        const char *url, *msg;
    } bad[] = {
        {"ftp://store", BAD_SCHEME},
        {"127.0.0.1:8000", BAD_SCHEME},
        {"http:/store", BAD_SCHEME},
        {"http://", BAD_HOST},
        {"http://:8000", BAD_HOST},
        {"http://::1:8000", BAD_HOST},
        {"http://[::1", BAD_HOST},
        {"http://[nothex]:80", BAD_HOST},
        {"http://st ore", BAD_HOST},
        {"http://store:0", BAD_PORT},
        {"http://store:65536", BAD_PORT},
        {"http://store:", BAD_PORT},
        {"http://store:80a", BAD_PORT},
        {"http://store/bucket", BAD_PATH},
        {"http://store//", BAD_PATH},
        {"http://store?x=1", BAD_PATH},
        {"http://store#frag", BAD_PATH},
        {"http://key:secret@store",
         "expected no user name in the URL (keys belong in credentials_file)"},
    };
    char text[512], want[1024];
    struct proxy_conf *cf;
    size_t i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(text, sizeof(text), "credentials_file creds.txt\nupstream \"%s\"\n", good[i].url);
        cf = load(text);
        ok(cf != NULL && streq(cf->upstream, good[i].url_want) &&
               streq(cf->upstream_host, good[i].host) && streq(cf->upstream_port, good[i].port) &&
               cf->upstream_https == good[i].https,
           "upstream %s", good[i].url);
        if (cf == NULL) {
            printf("# %s\n", err);
        }
        proxy_conf_unref(cf);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "credentials_file creds.txt\nupstream \"%s\"\n", bad[i].url);
        snprintf(want, sizeof(want), ":2: upstream: %s, got '%s'", bad[i].msg, bad[i].url);
        refused(text, want);
    }
}

static void
test_listen(void)
{
    static const char *const bad[] = {"8080",       "::1:8080", "[::1]8080", "[::1]",
                                      "[zz]:80",    "host:0",   "host:",     ":8080",
                                      "host:65536", "h/st:80",  "[]:80"};
    char text[512], want[1024];
    struct proxy_conf *cf;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), MINIMAL "listen %s\n", bad[i]);
        snprintf(want, sizeof(want),
                 ":3: listen: expected HOST:PORT like 127.0.0.1:8080 or [::1]:8080, got '%s'",
                 bad[i]);
        refused(text, want);
    }
    refused(MINIMAL "listen_tls 0:1 2:3\n",
            ":3: listen_tls: expected 1 value, got '0:1 2:3'");
    refused(MINIMAL "listen 127.0.0.1:80\nlisten_tls 127.0.0.1:80\n",
            ":4: listen_tls: '127.0.0.1:80' is already listed");
    refused(MINIMAL "listen [::1]:80\nlisten [::1]:80\n",
            ":4: listen: '[::1]:80' is already listed");
    cf = load(MINIMAL "listen 127.0.0.1:80\nlisten 127.0.0.1:81\nlisten [::1]:80\n");
    ok(cf != NULL && cf->nlistens == 3, "same host on two ports, same port on two hosts");
    proxy_conf_unref(cf);
}

static void
test_values(void)
{
    struct proxy_conf *cf;

    refused(MINIMAL "upstream_connect_timeout soon\n",
            ":3: upstream_connect_timeout: expected a duration like 5s or 250ms, got 'soon'");
    refused("# a\n\nlisen 127.0.0.1:80\n", ":3: unknown directive 'lisen'");
    refused(MINIMAL "workers 4\nworkers 5\n", ":4: workers: is a duplicate (first set at line 3)");
    refused(MINIMAL "upstream http://other:1\n",
            ":3: upstream: is a duplicate (first set at line 1)");
    refused(MINIMAL "workers 300\n", ":3: workers: expected an integer from 0 to 256, got '300'");
    refused(MINIMAL "workers -1\n", ":3: workers: expected an integer from 0 to 256, got '-1'");
    refused(MINIMAL "max_connections 0\n",
            ":3: max_connections: expected an integer from 1 to 1048576, got '0'");
    refused(MINIMAL "max_header_bytes 2m\n",
            ":3: max_header_bytes: expected a size from 1k to 1m, got '2m'");
    refused(MINIMAL "max_header_count many\n",
            ":3: max_header_count: expected an integer from 1 to 10000, got 'many'");
    refused(MINIMAL "max_request_line 100\n",
            ":3: max_request_line: expected a size from 256 to 1m, got '100'");
    refused(MINIMAL "client_header_timeout 0\n",
            ":3: client_header_timeout: expected a duration from 1ms to 1d, got '0'");
    refused(MINIMAL "client_body_timeout 2d\n",
            ":3: client_body_timeout: expected a duration from 1ms to 1d, got '2d'");
    refused(MINIMAL "client_idle_timeout -1s\n",
            ":3: client_idle_timeout: expected a duration like 5s or 250ms, got '-1s'");
    refused(MINIMAL "client_send_timeout 5 s\n",
            ":3: client_send_timeout: expected 1 value, got '5 s'");
    refused(MINIMAL "max_inflight_body 1k\n",
            ":3: max_inflight_body: expected a size from 64k to 1g, got '1k'");
    refused(MINIMAL "h2_max_concurrent_streams 0\n",
            ":3: h2_max_concurrent_streams: expected an integer from 1 to 10000, got '0'");
    refused(MINIMAL "region \"us east\"\n",
            ":3: region: expected a region name like us-east-1, got 'us east'");
    refused(MINIMAL "upstream_region a/b\n",
            ":3: upstream_region: expected a region name like us-east-1, got 'a/b'");
    refused(MINIMAL "virtual_host_domain .example.com\n",
            ":3: virtual_host_domain: expected a domain name like s3.example.com, got "
            "'.example.com'");
    refused(MINIMAL "virtual_host_domain s3_x.com\n",
            ":3: virtual_host_domain: expected a domain name like s3.example.com, got 's3_x.com'");
    refused(MINIMAL "virtual_host_domain a.com\nvirtual_host_domain A.com\n",
            ":4: virtual_host_domain: 'A.com' is already listed");
    refused(MINIMAL "max_clock_skew 500ms\n",
            ":3: max_clock_skew: expected a duration from 1s to 1d, got '500ms'");
    refused(MINIMAL "public_read_bucket a/b\n",
            ":3: public_read_bucket: expected a bucket name or *, got 'a/b'");
    refused(MINIMAL "upstream_tls_verify maybe\n",
            ":3: upstream_tls_verify: expected on or off, got 'maybe'");
    refused(MINIMAL "upstream_max_connections 0\n",
            ":3: upstream_max_connections: expected an integer from 1 to 65536, got '0'");
    refused(MINIMAL "error_log off\n",
            ":3: error_log: expected a file path or stderr (errors are always logged), got 'off'");
    refused(MINIMAL "log_level loud\n",
            ":3: log_level: expected one of error, warn, info, debug, got 'loud'");
    refused(MINIMAL "pid_file \"\"\n", ":3: pid_file: expected a non-empty value, got ''");
    refused(MINIMAL "credentials_file other.txt\n",
            ":3: credentials_file: is a duplicate (first set at line 2)");

    refused(MINIMAL "max_header_bytes 8k\nmax_request_line 16k\n",
            ":4: max_request_line: 16k is larger than max_header_bytes (8k), which includes the "
            "request line");
    cf = load(MINIMAL "max_header_bytes 8k\n");
    ok(cf != NULL && cf->max_request_line == 8192,
       "default max_request_line yields to a smaller max_header_bytes");
    proxy_conf_unref(cf);
}

static void
test_paths_and_creds(void)
{
    char want[1024], cwd[512], sub[512];
    struct proxy_conf *cf;

    snprintf(sub, sizeof(sub), "%s/keys", dir);
    mkdir(sub, 0700);
    write_file("keys/c.txt", creds_text, 0600);
    cf = load("upstream http://s:1\ncredentials_file keys/c.txt\n");
    ok(cf != NULL && streq(cf->credentials_file, in_dir("keys/c.txt")),
       "credentials_file in a subdirectory");
    proxy_conf_unref(cf);
    cf = load("upstream http://s:1\ncredentials_file /nonexistent/c.txt\n");
    ok(cf == NULL, "absolute credentials_file kept as is");
    ok_str(err, "/nonexistent/c.txt: cannot open: No such file or directory",
           "creds_load's message returned as is");
    remove_file("keys/c.txt");
    rmdir(sub);

    write_file("proxy.conf", MINIMAL, 0644);
    ok(getcwd(cwd, sizeof(cwd)) != NULL && chdir(dir) == 0, "chdir to the config's directory");
    cf = proxy_conf_load("proxy.conf", err, sizeof(err));
    ok(cf != NULL && streq(cf->credentials_file, "creds.txt"),
       "config named without a directory: paths stay relative to the working directory");
    proxy_conf_unref(cf);
    cf = proxy_conf_load("./proxy.conf", err, sizeof(err));
    ok(cf != NULL && streq(cf->credentials_file, "./creds.txt"), "./proxy.conf: ./creds.txt");
    proxy_conf_unref(cf);
    ok(chdir(cwd) == 0, "chdir back");

    write_file("creds.txt", creds_text, 0644);
    cf = load(MINIMAL);
    snprintf(want, sizeof(want),
             "%s/creds.txt: permissions 0644 are too open; run chmod 600 %s/creds.txt", dir, dir);
    ok(cf == NULL, "too-open credentials file refused");
    ok_str(err, want, "credentials permission message returned as is");
    write_file("creds.txt", "client AK secretc *\n", 0600);
    cf = load(MINIMAL);
    snprintf(want, sizeof(want), "%s/creds.txt: no 'store' line", dir);
    ok(cf == NULL, "credentials without store refused");
    ok_str(err, want, "missing store message");
    write_file("creds.txt", creds_text, 0600);

    cf = proxy_conf_load("/nonexistent/proxy.conf", err, sizeof(err));
    ok(cf == NULL, "missing config refused");
    ok_str(err, "/nonexistent/proxy.conf: cannot open: No such file or directory",
           "missing config message");
    cf = load(MINIMAL);
    ok(cf != NULL && creds_find_client(cf->creds, SLICE_LIT("AKCLIENT")) != NULL,
       "client keys reachable through cf->creds");
    proxy_conf_unref(cf);
}

static void *
ref_storm(void *arg)
{
    struct proxy_conf *cf = arg;
    int i;

    for (i = 0; i < 100000; i++) {
        proxy_conf_unref(proxy_conf_ref(cf));
    }
    return NULL;
}

static void
test_refs_and_buckets(void)
{
    struct proxy_conf *cf = load(MINIMAL "public_read_bucket photos\npublic_read_bucket logs\n"
                                         "public_read_bucket photos\n");
    const struct proxy_bucket_rule *r;
    pthread_t th[4];
    int i;

    ok(cf != NULL && cf->refs == 1, "loaded with refs 1");
    if (cf == NULL) {
        return;
    }
    ok(proxy_conf_ref(cf) == cf && cf->refs == 2, "ref returns the conf, refs 2");
    proxy_conf_unref(cf);
    ok(cf->refs == 1, "unref back to 1");
    for (i = 0; i < 4; i++) {
        pthread_create(&th[i], NULL, ref_storm, cf);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    ok(cf->refs == 1, "400000 concurrent ref/unref pairs leave refs at 1");

    ok(cf->nbuckets == 2, "a bucket listed twice has one rule");
    r = proxy_conf_bucket(cf, "photos", 6);
    ok(r != NULL && streq(r->bucket, "photos") && r->public_read, "exact rule");
    r = proxy_conf_bucket(cf, "logs-and-more", 4);
    ok(r != NULL && streq(r->bucket, "logs"), "rule found by length, not NUL");
    ok(proxy_conf_bucket(cf, "photo", 5) == NULL, "prefix does not match");
    ok(proxy_conf_bucket(cf, "photoss", 7) == NULL, "extension does not match");
    ok(proxy_conf_bucket(cf, "", 0) == NULL, "empty name matches nothing");
    proxy_conf_unref(cf);
    proxy_conf_unref(NULL);
    ok(1, "proxy_conf_unref(NULL) is a no-op");

    cf = load(MINIMAL "public_read_bucket *\npublic_read_bucket photos\n");
    ok(cf != NULL, "star rule loads");
    r = cf ? proxy_conf_bucket(cf, "anything", 8) : NULL;
    ok(r != NULL && streq(r->bucket, "*") && r->public_read, "other buckets get the * rule");
    r = cf ? proxy_conf_bucket(cf, "photos", 6) : NULL;
    ok(r != NULL && streq(r->bucket, "photos"), "exact rule wins over *");
    proxy_conf_unref(cf);
}

/* Reads the repository's proxy.conf.example into a malloc'd string (NULL if missing). */
static char *
read_example(void)
{
    FILE *fp = fopen("proxy.conf.example", "r");
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
        n = 0;
    }
    fclose(fp);
    return buf;
}

/* 1 if TEXT has a line exactly equal to LINE. */
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

/* 1 if TEXT has a line starting with PREFIX. */
static int
has_line_prefix(const char *text, const char *prefix)
{
    size_t len = strlen(prefix);
    const char *p = text;

    while ((p = strstr(p, prefix)) != NULL) {
        if (p == text || p[-1] == '\n') {
            return 1;
        }
        p += len;
    }
    return 0;
}

static void
test_example(void)
{
    char *text = read_example(), line[256];
    struct proxy_conf *cf;
    size_t i, missing = 0, wrong = 0;

    ok(text != NULL, "proxy.conf.example found (tests run from the repository root)");
    if (text == NULL) {
        return;
    }
    write_file("proxy.conf", text, 0644);
    write_file("creds.txt", creds_text, 0600);
    cf = proxy_conf_load(conf_path, err, sizeof(err));
    ok(cf != NULL, "proxy.conf.example loads with a creds.txt beside it");
    if (cf == NULL) {
        printf("# %s\n", err);
    } else {
        check_defaults(cf, "example");
    }
    proxy_conf_unref(cf);

    for (i = 0; proxy_conf_cmds[i].name != NULL; i++) {
        const struct conf_cmd *c = &proxy_conf_cmds[i];

        snprintf(line, sizeof(line), "# %s ", c->name);
        if (!has_line_prefix(text, line)) {
            snprintf(line, sizeof(line), "%s ", c->name);
            if (!has_line_prefix(text, line)) {
                printf("# %s is not in proxy.conf.example\n", c->name);
                missing++;
            }
        }
        if (c->def != NULL) {
            snprintf(line, sizeof(line), "# %s %s", c->name, c->def);
            if (!has_line(text, line)) {
                printf("# proxy.conf.example lacks '%s'\n", line);
                wrong++;
            }
        }
    }
    ok(missing == 0, "every directive appears in proxy.conf.example");
    ok(wrong == 0, "every default is shown as '# name default' in proxy.conf.example");
    ok(has_line(text, "# listen 127.0.0.1:8080"), "computed default for listen shown");
    free(text);
}

#define SITES "site_id a\nsite a http://127.0.0.1:8001\nsite b https://127.0.0.1:8002\n"

static void
test_replication(void)
{
    struct proxy_conf *cf;

    write_file("creds.txt", "client AKCLIENT secretc *\nstore AKSTORE secrets\n"
                            "site b AKFROMB secretfromb\npeer b AKTOB secrettob\n",
               0600);
    cf = load(MINIMAL);
    ok(cf && cf->site_id == NULL && proxy_conf_repl_mode(cf, "x", 1) == REPL_OFF,
       "no site_id: plain proxy, nothing replicated");
    proxy_conf_unref(cf);
    cf = load(MINIMAL SITES "redis 127.0.0.1:6390\nbucket_replication logs off\n"
                            "bucket_replication photos async b\n");
    ok(cf != NULL, "site config loads: %s", cf ? "" : err);
    ok(cf && cf->nsites == 2 && strcmp(cf->redis_host, "127.0.0.1") == 0 && cf->redis_port == 6390,
       "sites and redis parsed");
    ok(cf && proxy_conf_repl_mode(cf, "x", 1) == REPL_ASYNC, "default mode is async");
    ok(cf && proxy_conf_repl_mode(cf, "logs", 4) == REPL_OFF, "bucket rule off");
    ok(cf && cf->max_clock_offset_ms == 60000 && cf->lease_ms == 30000 &&
           cf->redis_command_timeout_ms == 2000,
       "replication defaults");
    ok(cf && cf->site_ca_file == NULL && cf->bucket_op_timeout_ms == 30000,
       "bucket operations: system CAs, 30 s");
    proxy_conf_unref(cf);
    cf = load(MINIMAL SITES "redis 127.0.0.1:6390\nsite_ca_file /etc/hostname\n"
                            "bucket_op_timeout 2s\n");
    ok(cf && strcmp(cf->site_ca_file, "/etc/hostname") == 0 && cf->bucket_op_timeout_ms == 2000,
       "site_ca_file and bucket_op_timeout set");
    proxy_conf_unref(cf);
    refused(MINIMAL SITES "redis 127.0.0.1:6390\nsite_ca_file /nonexistent/ca.pem\n",
            ":7: site_ca_file: cannot read '/nonexistent/ca.pem': No such file or directory");
    cf = load(MINIMAL SITES "redis 127.0.0.1:6390\n");
    ok(cf && cf->conflict_bucket == NULL, "no conflict bucket by default");
    proxy_conf_unref(cf);
    cf = load(MINIMAL SITES "redis 127.0.0.1:6390\nconflict_bucket losers-a.1\n");
    ok(cf && streq(cf->conflict_bucket, "losers-a.1"), "conflict_bucket set");
    proxy_conf_unref(cf);
    cf = load(MINIMAL SITES "redis 127.0.0.1:6390\nconflict_bucket \"\"\n");
    ok(cf && cf->conflict_bucket == NULL, "conflict_bucket \"\" is off");
    proxy_conf_unref(cf);
    refused(MINIMAL SITES "redis 127.0.0.1:6390\nconflict_bucket Losers\n",
            ":7: conflict_bucket: expected a bucket name of 3 to 63 characters from a-z, 0-9, "
            "'.' and '-', starting and ending with a letter or digit (or \"\" for none)"
            ", got 'Losers'");
    refused(MINIMAL SITES "redis 127.0.0.1:6390\nconflict_bucket ab\n",
            ":7: conflict_bucket: expected a bucket name of 3 to 63 characters from a-z, 0-9, "
            "'.' and '-', starting and ending with a letter or digit (or \"\" for none)"
            ", got 'ab'");
    refused(MINIMAL SITES "redis 127.0.0.1:6390\nconflict_bucket a/b/c\n",
            ":7: conflict_bucket: expected a bucket name of 3 to 63 characters from a-z, 0-9, "
            "'.' and '-', starting and ending with a letter or digit (or \"\" for none)"
            ", got 'a/b/c'");
    refused(MINIMAL "conflict_bucket losers\n",
            ":3: conflict_bucket: replication needs site_id (this site's id) as well");
    refused(MINIMAL SITES "redis 127.0.0.1:6390\nbucket_op_timeout 1ms\n",
            ":7: bucket_op_timeout: expected a duration from 100ms to 1d, got '1ms'");
    refused(MINIMAL "site_id c\nsite a http://127.0.0.1:8001\nsite b http://127.0.0.1:8002\n"
                    "redis 127.0.0.1:6390\n",
            ":3: site_id: 'c' is not among the sites listed with 'site ID URL' (list every site "
            "of the deployment, this one included)");
    refused(MINIMAL SITES "site b http://127.0.0.1:9\nredis 127.0.0.1:1\n",
            ":6: site: site 'b' is a duplicate (first listed at line 5)");
    /* other sites over TLS unless site_plain_http says the network is trusted */
    refused(MINIMAL SITES "site c http://10.0.0.3:8080\nredis 127.0.0.1:1\n",
            ":6: site: 'c' has a plain http:// URL (http://10.0.0.3:8080): bucket operations "
            "would reach it unencrypted; use https:// or, on a trusted network only, set "
            "'site_plain_http yes'");
    refused(MINIMAL SITES "site c http://10.0.0.3\nsite_plain_http maybe\n",
            ":7: site_plain_http: expected on or off, got 'maybe'");
    cf = load(MINIMAL "site_id a\nsite a http://127.0.0.1:8001\nsite b http://127.0.0.1:8002\n"
                      "site_plain_http yes\nredis 127.0.0.1:1\n");
    ok(cf && cf->site_plain_http == 1 && cf->nsites == 2,
       "site_plain_http yes allows http:// for other sites %s", cf ? "" : err);
    proxy_conf_unref(cf);
    refused(MINIMAL SITES "redis 127.0.0.1:6390\nbucket_replication photos async b,zz\n",
            ":7: bucket_replication: unknown site 'zz' for bucket 'photos' (sites are declared "
            "with 'site ID URL')");
    refused(MINIMAL SITES "redis 127.0.0.1:6390\nreplication sync\n",
            ":7: replication: sync mode is not available yet; use async (acknowledge after the "
            "local write) or off");
    refused(MINIMAL SITES "redis 127.0.0.1:6390\nbucket_replication x sync\n",
            ":7: bucket_replication: sync mode is not available yet for bucket 'x'; use async "
            "or off");
    refused(MINIMAL SITES, ": redis is required");
    refused(MINIMAL "redis 127.0.0.1:6390\n",
            ":3: redis: replication needs site_id (this site's id) as well");
    refused(MINIMAL "site_id A_B\n",
            ":3: site_id: expected a site id of 1 to 32 characters from a-z, 0-9 and '-', got "
            "'A_B'");
    write_file("creds.txt", creds_text, 0600);
    {
        char want[1024];

        snprintf(want, sizeof(want),
                 ":5: site: no 'peer b ACCESS_KEY SECRET' line in %s/creds.txt for site 'b'",
                 dir);
        refused(MINIMAL SITES "redis 127.0.0.1:6390\n", want);
    }
}

int
main(void)
{
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(conf_path, sizeof(conf_path), "%s/proxy.conf", dir);
    write_file("creds.txt", creds_text, 0600);

    test_defaults();
    test_every_directive();
    test_required_and_tls();
    test_upstream_urls();
    test_listen();
    test_values();
    test_paths_and_creds();
    test_refs_and_buckets();
    test_example();
    test_replication();

    remove_file("proxy.conf");
    remove_file("creds.txt");
    rmdir(dir);
    return done_testing();
}
