/* timeutil.c - clocks and time formats. */
#include "timeutil.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int64_t clock_offset_ms;
static atomic_int offset_loaded;

static void
load_offset(void)
{
    if (!atomic_exchange(&offset_loaded, 1)) {
        const char *e = getenv("S3TEE_CLOCK_OFFSET_MS");

        if (e != NULL) {
            clock_offset_ms = strtoll(e, NULL, 10);
        }
    }
}

void
timeutil_set_offset_ms(int64_t off)
{
    atomic_store(&offset_loaded, 1);
    clock_offset_ms = off;
}

int64_t
timeutil_now_ms(void)
{
    struct timespec ts;

    load_offset();
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + clock_offset_ms;
}

int64_t
timeutil_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
timeutil_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
timeutil_iso8601_now(char out[TIMEUTIL_ISO_LEN])
{
    timeutil_iso8601(timeutil_now_ms(), out);
}

void
timeutil_iso8601(int64_t ms, char out[TIMEUTIL_ISO_LEN])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    snprintf(out, TIMEUTIL_ISO_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

void
timeutil_amz_date(time_t t, char out[TIMEUTIL_AMZ_LEN])
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, TIMEUTIL_AMZ_LEN, "%Y%m%dT%H%M%SZ", &tm);
}

void
timeutil_http_date(time_t t, char *out, size_t outlen)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, outlen, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static int
digits(const char *p, int n)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

int
timeutil_parse_amz_date(struct slice s, time_t *out)
{
    struct tm tm;
    int y, mo, d, h, mi, se;

    if (s.len != 16 || s.ptr[8] != 'T' || s.ptr[15] != 'Z') {
        return -1;
    }
    y = digits(s.ptr, 4);
    mo = digits(s.ptr + 4, 2);
    d = digits(s.ptr + 6, 2);
    h = digits(s.ptr + 9, 2);
    mi = digits(s.ptr + 11, 2);
    se = digits(s.ptr + 13, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 ||
        mi > 59 || se < 0 || se > 60) {
        return -1;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    *out = timegm(&tm);
    return 0;
}

static int
parse_number(const char *s, uint64_t *v, const char **rest)
{
    uint64_t n = 0;
    const char *p = s;

    if (*p < '0' || *p > '9') {
        return -1;
    }
    while (*p >= '0' && *p <= '9') {
        if (n > (UINT64_MAX - 9) / 10) {
            return -1;
        }
        n = n * 10 + (uint64_t)(*p - '0');
        p++;
    }
    *v = n;
    *rest = p;
    return 0;
}

int
timeutil_parse_duration_ms(const char *s, int64_t *out_ms)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {{"ms", 1}, {"s", 1000}, {"", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *rest;
    uint64_t v;
    size_t i;

    if (parse_number(s, &v, &rest) != 0) {
        return -1;
    }
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(rest, units[i].suffix) == 0) {
            if (v > (uint64_t)INT64_MAX / units[i].mult) {
                return -1;
            }
            *out_ms = (int64_t)(v * units[i].mult);
            return 0;
        }
    }
    return -1;
}

int
timeutil_parse_size(const char *s, uint64_t *out)
{
    const char *rest;
    uint64_t v, mult;

    if (parse_number(s, &v, &rest) != 0) {
        return -1;
    }
    if (rest[0] == '\0') {
        mult = 1;
    } else if (rest[1] != '\0' && !((rest[1] == 'b' || rest[1] == 'B') && rest[2] == '\0')) {
        return -1;
    } else if (rest[0] == 'k' || rest[0] == 'K') {
        mult = 1024;
    } else if (rest[0] == 'm' || rest[0] == 'M') {
        mult = 1024 * 1024;
    } else if (rest[0] == 'g' || rest[0] == 'G') {
        mult = 1024 * 1024 * 1024;
    } else {
        return -1;
    }
    if (v > UINT64_MAX / mult) {
        return -1;
    }
    *out = v * mult;
    return 0;
}
