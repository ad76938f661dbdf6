/*
 * main.c - s3tee-proxy: options, config, TLS context, worker threads, signals.
 *
 * The main thread only waits for signals: SIGTERM/SIGINT drain every worker and exit,
 * SIGHUP loads the config again and hands it to the workers (listen addresses and TLS
 * files stay as they were at start; credentials, buckets, limits and timeouts change).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "common/xalloc.h"
#include "proxy/accesslog.h"
#include "proxy/conf.h"
#include "proxy/worker.h"

static struct server srv;

static void
usage(FILE *f)
{
    fprintf(f, "usage: s3tee-proxy -c FILE [-t]\n"
               "  -c, --config FILE   configuration (see proxy.conf.example)\n"
               "  -t, --test          check the configuration and exit (0 = valid)\n"
               "  -v, --version       print the version\n"
               "  -h, --help          this text\n"
               "signals: SIGTERM drains in-flight requests and exits; SIGHUP reloads the\n"
               "configuration (credentials, buckets, limits) without dropping connections.\n");
}

static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
            unsigned int inlen, void *arg)
{
    static const unsigned char *const prefs[] = {(const unsigned char *)"\x02h2",
                                                 (const unsigned char *)"\x08http/1.1"};
    size_t k;

    (void)ssl;
    (void)arg;
    for (k = 0; k < 2; k++) {
        unsigned int i = 0;

        while (i < inlen) {
            unsigned int len = in[i];

            if (i + 1 + len > inlen) {
                break;
            }
            if (len == prefs[k][0] && memcmp(in + i + 1, prefs[k] + 1, len) == 0) {
                *out = in + i + 1;
                *outlen = (unsigned char)len;
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + len;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *
make_ssl_ctx(const struct proxy_conf *cf)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char buf[256];

    if (ctx == NULL) {
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cf->tls_certificate) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, cf->tls_certificate_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
        fprintf(stderr, "s3tee-proxy: %s: cannot use tls_certificate %s / tls_certificate_key "
                        "%s: %s\n",
                cf->path, cf->tls_certificate, cf->tls_certificate_key, buf);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    return ctx;
}

static int
apply_logging(const struct proxy_conf *cf)
{
    enum log_level lvl = LOG_INFO;

    if (cf->log_level != NULL && log_level_parse(cf->log_level, &lvl) == 0) {
        log_set_level(lvl);
    }
    if (log_open(cf->error_log) != 0) {
        fprintf(stderr, "s3tee-proxy: cannot open error_log %s: %s\n", cf->error_log,
                strerror(errno));
        return -1;
    }
    return 0;
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct event_base *evb = arg;
    int i;

    (void)what;
    if (sig == SIGHUP) {
        char err[1024];
        struct proxy_conf *cf = proxy_conf_load(srv.cf->path, err, sizeof(err));
        struct proxy_conf *old;

        if (cf == NULL) {
            log_error("main", "reload refused, keeping the running configuration: %s", err);
            return;
        }
        apply_logging(cf);
        pthread_mutex_lock(&srv.lock);
        old = srv.cf;
        srv.cf = cf;
        pthread_mutex_unlock(&srv.lock);
        proxy_conf_unref(old);
        for (i = 0; i < srv.nworkers; i++) {
            event_active(srv.workers[i].reload_ev, 0, 0);
        }
        log_info("main", "configuration reloaded from %s", cf->path);
        return;
    }
    log_info("main", "signal %d: draining %d workers", (int)sig, srv.nworkers);
    for (i = 0; i < srv.nworkers; i++) {
        event_active(srv.workers[i].stop_ev, 0, 0);
    }
    event_base_loopexit(evb, NULL);
}

static int
write_pid_file(const char *path)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        return -1;
    }
    fprintf(f, "%ld\n", (long)getpid());
    return fclose(f);
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"test", no_argument, NULL, 't'},
                                         {"version", no_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    struct proxy_conf *cf;
    struct event_base *evb;
    struct event *sigs[4];
    const int signums[4] = {SIGTERM, SIGINT, SIGHUP, 0};
    char err[1024];
    int test_only = 0, opt, i, started = 0, rc = 0;

    while ((opt = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'v':
            printf("s3tee-proxy %s\n", S3TEE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    cf = proxy_conf_load(path, err, sizeof(err));
    if (cf == NULL) {
        fprintf(stderr, "s3tee-proxy: %s\n", err);
        return 1;
    }
    if (test_only) {
        printf("s3tee-proxy: configuration %s is valid\n", path);
        proxy_conf_unref(cf);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    curl_global_init(CURL_GLOBAL_ALL);
    if (apply_logging(cf) != 0) {
        return 1;
    }
    memset(&srv, 0, sizeof(srv));
    pthread_mutex_init(&srv.lock, NULL);
    srv.cf = cf;
    if (RAND_bytes((unsigned char *)&srv.boot_id, sizeof(srv.boot_id)) != 1) {
        srv.boot_id = (uint32_t)getpid();
    }
    srv.access_log_fd = accesslog_open(cf->access_log);
    if (srv.access_log_fd == -2) {
        fprintf(stderr, "s3tee-proxy: cannot open access_log %s: %s\n", cf->access_log,
                strerror(errno));
        return 1;
    }
    for (i = 0; i < (int)cf->nlistens; i++) {
        if (cf->listens[i].tls && srv.ssl_ctx == NULL) {
            srv.ssl_ctx = make_ssl_ctx(cf);
            if (srv.ssl_ctx == NULL) {
                return 1;
            }
        }
    }
    srv.nworkers = cf->workers > 0 ? cf->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (srv.nworkers < 1) {
        srv.nworkers = 1;
    }
    srv.workers = xcalloc((size_t)srv.nworkers, sizeof(*srv.workers));
    for (i = 0; i < srv.nworkers; i++) {
        if (worker_init(&srv.workers[i], &srv, i, err, sizeof(err)) != 0) {
            fprintf(stderr, "s3tee-proxy: %s\n", err);
            rc = 1;
            break;
        }
    }
    evb = event_base_new();
    for (i = 0; signums[i] != 0; i++) {
        sigs[i] = evsignal_new(evb, signums[i], on_signal, evb);
        evsignal_add(sigs[i], NULL);
    }
    if (rc == 0) {
        if (cf->pid_file != NULL && write_pid_file(cf->pid_file) != 0) {
            log_warn("main", "cannot write pid_file %s: %s", cf->pid_file, strerror(errno));
        }
        for (i = 0; i < srv.nworkers; i++) {
            if (worker_start(&srv.workers[i]) != 0) {
                rc = 1;
                break;
            }
            started++;
        }
        if (rc == 0) {
            log_info("main", "s3tee-proxy %s: %d workers, store %s", S3TEE_VERSION, srv.nworkers,
                     cf->upstream);
            event_base_dispatch(evb);
        } else {
            for (i = 0; i < started; i++) {
                event_active(srv.workers[i].stop_ev, 0, 0);
            }
        }
    }
    for (i = 0; i < started; i++) {
        pthread_join(srv.workers[i].thread, NULL);
    }
    for (i = 0; i < srv.nworkers; i++) {
        worker_deinit(&srv.workers[i]);
    }
    for (i = 0; signums[i] != 0; i++) {
        event_free(sigs[i]);
    }
    event_base_free(evb);
    if (srv.cf->pid_file != NULL && rc == 0) {
        unlink(srv.cf->pid_file);
    }
    free(srv.workers);
    if (srv.ssl_ctx != NULL) {
        SSL_CTX_free(srv.ssl_ctx);
    }
    if (srv.access_log_fd > STDERR_FILENO) {
        close(srv.access_log_fd);
    }
    proxy_conf_unref(srv.cf);
    curl_global_cleanup();
    log_info("main", "stopped");
    return rc;
}
