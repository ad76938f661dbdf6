/*
 * upstream_tls.c - TLS for upstream.c's own HTTP/1.1 client: one SSL_CTX per upstream
 * (verification settings, CA bundle, the last session for resumption), and read/write
 * calls that answer the way readv/sendmsg do, so upstream.c's connection code stays one
 * state machine for http and https.
 *
 * Sockets stay non-blocking and libevent watches them: a call that cannot go on says which
 * way the socket must become ready (*want_write), since a TLS read may have to write (a key
 * update) and a write may have to read.
 */
#include "common/upstream_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/log.h"

/* Keeps the newest session the server gave, so new connections resume instead of paying
 * for a full handshake each. Called by OpenSSL with a reference we now own. */
static int
on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct upstream *u = SSL_get_app_data(ssl);

    if (u == NULL) {
        return 0;
    }
    if (u->tls_session != NULL) {
        SSL_SESSION_free(u->tls_session);
    }
    u->tls_session = sess;
    return 1;
}

/* The first OpenSSL error queued, as text; empties the queue (it is per thread and a
 * stale entry would be blamed on the next connection). */
static const char *
ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();

    if (e == 0) {
        snprintf(buf, len, "%s", errno != 0 ? strerror(errno) : "connection closed");
    } else {
        ERR_error_string_n(e, buf, len);
    }
    ERR_clear_error();
    return buf;
}

int
upstream_tls_init(struct upstream *u, const struct upstream_opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    static const unsigned char alpn[] = "\x08http/1.1";
    char why[256];

    if (ctx == NULL) {
        log_error("upstream", "cannot make a TLS context for %s: %s", o->base_url,
                  ssl_reason(why, sizeof(why)));
        return -1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* partial writes: SSL_write returns after each record, so a full socket keeps the rest
     * in our buffer; moving buffer: a retry may come from a pulled-up copy at another
     * address, holding the same bytes */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    /* one read() takes what the socket has, not a record header and then its body */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    if (o->tls_verify) {
        int ok = o->ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL)
                                    : SSL_CTX_set_default_verify_paths(ctx);

        if (ok != 1) {
            log_error("upstream", "cannot load the CA bundle %s for %s: %s",
                      o->ca_file != NULL ? o->ca_file : "(system default)", o->base_url,
                      ssl_reason(why, sizeof(why)));
            SSL_CTX_free(ctx);
            return -1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    u->tls_ctx = ctx;
    u->tls_verify = o->tls_verify;
    return 0;
}

void
upstream_tls_deinit(struct upstream *u)
{
    if (u->tls_session != NULL) {
        SSL_SESSION_free(u->tls_session);
        u->tls_session = NULL;
    }
    if (u->tls_ctx != NULL) {
        SSL_CTX_free(u->tls_ctx);
        u->tls_ctx = NULL;
    }
}

SSL *
upstream_tls_new(struct upstream *u, int fd)
{
    unsigned char ip[16];
    int is_ip;
    SSL *ssl;

    if (u->tls_ctx == NULL) {
        return NULL; /* the context failed at startup (logged then) */
    }
    ssl = SSL_new(u->tls_ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_app_data(ssl, u);
    SSL_set_connect_state(ssl);
    is_ip = inet_pton(AF_INET, u->host, ip) == 1 || inet_pton(AF_INET6, u->host, ip) == 1;
    if (!is_ip) {
        SSL_set_tlsext_host_name(ssl, u->host); /* SNI is for names only (RFC 6066) */
    }
    if (u->tls_verify) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, u->host) : SSL_set1_host(ssl, u->host);

        if (ok != 1) {
            SSL_free(ssl);
            ERR_clear_error();
            return NULL;
        }
    }
    if (u->tls_session != NULL) {
        SSL_set_session(ssl, u->tls_session);
    }
    return ssl;
}

int
upstream_tls_handshake(struct upstream *u, SSL *ssl, int *want_write)
{
    int rc = SSL_do_handshake(ssl);
    char why[256];
    long vr;

    if (rc == 1) {
        return 1;
    }
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        *want_write = 0;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *want_write = 1;
        return 0;
    default:
        break;
    }
    vr = SSL_get_verify_result(ssl);
    if (vr != X509_V_OK) {
        log_warn("upstream", "TLS to %s:%s: the certificate was refused: %s", u->host, u->port,
                 X509_verify_cert_error_string(vr));
        ERR_clear_error();
    } else {
        log_warn("upstream", "TLS handshake with %s:%s failed: %s", u->host, u->port,
                 ssl_reason(why, sizeof(why)));
    }
    return -1;
}

/* Maps a failed SSL_read/SSL_write: -1 with errno EAGAIN and *WANT_WRITE when the socket
 * must become ready, 0 for a read at the end of the stream, -1 with errno EIO otherwise. */
static ssize_t
tls_fail(SSL *ssl, int rc, int *want_write, int reading)
{
    char why[256];
    int err = SSL_get_error(ssl, rc);

    switch (err) {
    case SSL_ERROR_WANT_READ:
        *want_write = 0;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want_write = 1;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        if (reading) {
            return 0; /* close_notify: an orderly end */
        }
        errno = EPIPE;
        return -1;
    default:
        break;
    }
    /* a peer that closed without close_notify ends the stream too: the HTTP framing
     * (Content-Length, chunks) says whether the answer was whole, as on plain http */
    if (reading && (err == SSL_ERROR_SYSCALL ||
                    ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        ERR_clear_error();
        return 0;
    }
    log_debug("upstream", "TLS %s: %s", reading ? "read" : "write", ssl_reason(why, sizeof(why)));
    errno = EIO;
    return -1;
}

ssize_t
upstream_tls_read(SSL *ssl, void *buf, size_t len, int *want_write)
{
    int rc = SSL_read(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);

    return rc > 0 ? rc : tls_fail(ssl, rc, want_write, 1);
}

ssize_t
upstream_tls_write(SSL *ssl, const void *buf, size_t len, int *want_write)
{
    int rc = SSL_write(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);

    return rc > 0 ? rc : tls_fail(ssl, rc, want_write, 0);
}

void
upstream_tls_free(SSL *ssl, int orderly)
{
    if (ssl == NULL) {
        return;
    }
    if (orderly) {
        /* one close_notify, not waiting for the answer: the socket closes right after */
        (void)SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    ERR_clear_error();
}
