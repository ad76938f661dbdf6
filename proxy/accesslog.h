/* accesslog.h - one JSON line per request (jansson); never secrets or signatures. */
#ifndef S3TEE_PROXY_ACCESSLOG_H
#define S3TEE_PROXY_ACCESSLOG_H

#include <stdint.h>

#include "common/slice.h"

struct server;

struct accesslog_entry {
    const char *request_id;  /* x-amz-request-id we assigned */
    const char *client;      /* "ip:port" */
    const char *proto;       /* "HTTP/1.1" / "HTTP/2" */
    const char *access_key;  /* client access key id, "-" when anonymous (never the secret) */
    struct slice method;     /* "PUT" */
    struct slice bucket;     /* may be empty */
    struct slice key;        /* may be empty; any bytes (made valid UTF-8 for JSON) */
    const char *op;          /* "PutObject" */
    int status;              /* status sent; 499 when the client left first */
    const char *error_code;  /* S3 code of an error we generated, or NULL */
    int64_t bytes_in;        /* request body bytes received */
    int64_t bytes_out;       /* response body bytes sent */
    int64_t upstream_us;     /* time to the store's response head */
    int64_t total_us;        /* time from first byte of the head to the end */
};

/* Opens PATH for appending ("stderr" = fd 2, "off" = -1). Returns the fd, or -2 on error. */
int accesslog_open(const char *path);
/* Formats E as one line and writes it with a single write() to srv->access_log_fd. */
void accesslog_write(struct server *srv, const struct accesslog_entry *e);

#endif
