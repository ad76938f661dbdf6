/* accesslog.c - JSON access log lines. */
#include "proxy/accesslog.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/timeutil.h"
#include "proxy/worker.h"

int
accesslog_open(const char *path)
{
    int fd;

    if (path == NULL || strcmp(path, "off") == 0) {
        return -1;
    }
    if (strcmp(path, "stderr") == 0) {
        return STDERR_FILENO;
    }
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    return fd < 0 ? -2 : fd;
}

/* JSON strings must be UTF-8; object keys are arbitrary bytes, so invalid ones become '?'. */
static json_t *
jstr(struct slice s)
{
    json_t *j = json_stringn(s.ptr ? s.ptr : "", s.len);
    char *copy;
    size_t i;

    if (j != NULL) {
        return j;
    }
    copy = malloc(s.len + 1);
    if (copy == NULL) {
        return json_string("?");
    }
    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];

        copy[i] = (c < 0x20 || c >= 0x80) ? '?' : (char)c;
    }
    j = json_stringn(copy, s.len);
    free(copy);
    return j;
}

void
accesslog_write(struct server *srv, const struct accesslog_entry *e)
{
    char ts[TIMEUTIL_ISO_LEN];
    json_t *o;
    char *line;
    size_t n;

    if (srv == NULL || srv->access_log_fd < 0) {
        return;
    }
    timeutil_iso8601_now(ts);
    o = json_object();
    json_object_set_new(o, "time", json_string(ts));
    json_object_set_new(o, "request_id", json_string(e->request_id));
    json_object_set_new(o, "client", json_string(e->client ? e->client : "-"));
    json_object_set_new(o, "proto", json_string(e->proto ? e->proto : "-"));
    json_object_set_new(o, "access_key", jstr(slice_cstr(e->access_key)));
    json_object_set_new(o, "method", jstr(e->method));
    json_object_set_new(o, "bucket", jstr(e->bucket));
    json_object_set_new(o, "key", jstr(e->key));
    json_object_set_new(o, "op", json_string(e->op ? e->op : "-"));
    json_object_set_new(o, "status", json_integer(e->status));
    if (e->error_code != NULL) {
        json_object_set_new(o, "error", json_string(e->error_code));
    }
    json_object_set_new(o, "bytes_in", json_integer(e->bytes_in));
    json_object_set_new(o, "bytes_out", json_integer(e->bytes_out));
    json_object_set_new(o, "upstream_ms", json_real((double)e->upstream_us / 1000.0));
    json_object_set_new(o, "total_ms", json_real((double)e->total_us / 1000.0));
    line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (line == NULL) {
        return;
    }
    n = strlen(line);
    line[n] = '\n';
    /* one write per line: O_APPEND keeps lines from different threads whole */
    if (write(srv->access_log_fd, line, n + 1) < 0) {
        /* the access log is best effort; the request already completed */
    }
    free(line);
}
