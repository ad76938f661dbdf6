/* log.c - leveled diagnostics; one write() per line so threads do not interleave. */
#include "log.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "timeutil.h"

static _Atomic int cur_level = LOG_INFO;
static _Atomic int log_fd = STDERR_FILENO;
static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void
log_set_level(enum log_level lvl)
{
    cur_level = lvl;
}

enum log_level
log_get_level(void)
{
    return (enum log_level)cur_level;
}

int
log_level_parse(const char *s, enum log_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    int i;

    for (i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int
log_open(const char *path)
{
    int fd, old;

    if (path == NULL || strcmp(path, "stderr") == 0) {
        fd = STDERR_FILENO;
    } else {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            return -1;
        }
    }
    old = atomic_exchange(&log_fd, fd);
    if (old != STDERR_FILENO && old != fd) {
        close(old);
    }
    return 0;
}

void
log_msg(enum log_level lvl, const char *component, const char *fmt, ...)
{
    char line[2048];
    char ts[TIMEUTIL_ISO_LEN];
    va_list ap;
    int n, m;

    if ((int)lvl > cur_level) {
        return;
    }
    timeutil_iso8601_now(ts);
    n = snprintf(line, sizeof(line), "%s %s [%s] ", ts, level_names[lvl], component);
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) {
        m = 0;
    }
    n += m;
    if ((size_t)n > sizeof(line) - 2) {
        n = sizeof(line) - 2;
    }
    line[n++] = '\n';
    if (write(log_fd, line, (size_t)n) < 0) {
        /* nowhere left to report a failing log; drop the line */
    }
}
