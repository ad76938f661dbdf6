/* timeutil.h - wall and monotonic clocks, durations and sizes from config, amz-date. */
#ifndef S3TEE_TIMEUTIL_H
#define S3TEE_TIMEUTIL_H

#include <stdint.h>
#include <time.h>

#include "slice.h"

#define TIMEUTIL_ISO_LEN 48  /* "2026-11-22T10:00:00.123Z" + NUL, with room */
#define TIMEUTIL_AMZ_LEN 17  /* "20261122T100000Z" + NUL */

/* Milliseconds since the epoch (wall clock; tests may offset it, see timeutil_set_offset_ms). */
int64_t timeutil_now_ms(void);
/* Milliseconds on CLOCK_MONOTONIC, for measuring durations. */
int64_t timeutil_mono_ms(void);
/* Microseconds on CLOCK_MONOTONIC. */
int64_t timeutil_mono_us(void);
/* Test-only wall-clock offset (S3TEE_CLOCK_OFFSET_MS in the environment sets it at start). */
void timeutil_set_offset_ms(int64_t off);

/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" for now into OUT. */
void timeutil_iso8601_now(char out[TIMEUTIL_ISO_LEN]);
/* The same for MS (Unix milliseconds, UTC). */
void timeutil_iso8601(int64_t ms, char out[TIMEUTIL_ISO_LEN]);
/* Writes "YYYYMMDDTHHMMSSZ" for T (seconds since the epoch, UTC). */
void timeutil_amz_date(time_t t, char out[TIMEUTIL_AMZ_LEN]);
/* Writes an RFC 1123 date ("Sun, 22 Nov 2026 10:00:00 GMT") for T into OUT (>= 30 bytes). */
void timeutil_http_date(time_t t, char *out, size_t outlen);
/* Parses "YYYYMMDDTHHMMSSZ" exactly; returns 0 and *out, or -1. */
int timeutil_parse_amz_date(struct slice s, time_t *out);

/*
 * Config values. Durations: a number with ms, s, m, h or d ("250ms", "5s"); a bare number
 * is seconds. Sizes: a number with k, m, g (powers of 1024) or none (bytes).
 * Both return 0, or -1 when the text is not of that form or overflows.
 */
int timeutil_parse_duration_ms(const char *s, int64_t *out_ms);
int timeutil_parse_size(const char *s, uint64_t *out);

#endif
