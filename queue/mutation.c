/* mutation.c - struct mutation <-> s3tee:log stream field/value pairs. Sans-I/O. */
#include "queue/mutation.h"

#include <stdio.h>

#include "queue/stamp.h"

static const char *const op_names[] = {"put", "delete", "tags"};

const char *
mutation_op_name(enum mutation_op op)
{
    if ((unsigned)op >= sizeof(op_names) / sizeof(op_names[0])) {
        return "unknown";
    }
    return op_names[op];
}

/* Appends one pair; a NULL slice becomes "" (hiredis would memcpy from NULL). */
static void
put_pair(const char **argv, size_t *argvlen, size_t *n, const char *field, struct slice v)
{
    argv[*n] = field;
    argvlen[*n] = strlen(field);
    argv[*n + 1] = v.ptr ? v.ptr : "";
    argvlen[*n + 1] = v.ptr ? v.len : 0;
    *n += 2;
}

size_t
mutation_encode(const struct mutation *m, const char **argv, size_t *argvlen, char *scratch)
{
    size_t n = 0;
    char *size = scratch, *time = scratch + 32;
    int sl = snprintf(size, 32, "%lld", (long long)m->size);
    int tl = snprintf(time, 32, "%lld", (long long)m->time_ms);

    put_pair(argv, argvlen, &n, "op", slice_cstr(mutation_op_name(m->op)));
    put_pair(argv, argvlen, &n, "bucket", m->bucket);
    put_pair(argv, argvlen, &n, "key", m->key);
    put_pair(argv, argvlen, &n, "stamp", m->stamp);
    put_pair(argv, argvlen, &n, "vv", m->vv);
    put_pair(argv, argvlen, &n, "etag", m->etag);
    put_pair(argv, argvlen, &n, "size", slice_make(size, (size_t)sl));
    put_pair(argv, argvlen, &n, "tags", m->tags);
    put_pair(argv, argvlen, &n, "parts", m->parts);
    put_pair(argv, argvlen, &n, "time", slice_make(time, (size_t)tl));
    return n / 2;
}

/* A decimal int64 with an optional leading '-'; 0 or -1. */
static int
parse_i64(struct slice s, int64_t *out)
{
    uint64_t u;
    int neg = s.len > 0 && s.ptr[0] == '-';

    if (neg) {
        s.ptr++;
        s.len--;
    }
    if (slice_to_u64(s, &u) != 0 || u > (uint64_t)INT64_MAX) {
        return -1;
    }
    *out = neg ? -(int64_t)u : (int64_t)u;
    return 0;
}

/* "" or decimal sizes separated by single commas. */
static int
parts_valid(struct slice s)
{
    size_t i, digits = 0;

    for (i = 0; i < s.len; i++) {
        if (s.ptr[i] == ',') {
            if (digits == 0) {
                return 0;
            }
            digits = 0;
        } else if (s.ptr[i] >= '0' && s.ptr[i] <= '9') {
            digits++;
        } else {
            return 0;
        }
    }
    return s.len == 0 || digits > 0;
}

int
mutation_decode(const struct slice *fields, size_t npairs, struct mutation *out)
{
    int have_op = 0, have_bucket = 0, have_key = 0, have_stamp = 0;
    struct stamp st;
    struct vv vv;
    size_t i;

    memset(out, 0, sizeof(*out));
    out->bucket = out->key = out->stamp = out->vv = SLICE_LIT("");
    out->etag = out->tags = out->parts = SLICE_LIT("");
    out->size = -1;
    for (i = 0; i < npairs; i++) {
        struct slice f = fields[2 * i], v = fields[2 * i + 1];

        if (slice_eq(f, SLICE_LIT("op"))) {
            size_t k;

            for (k = 0; k < sizeof(op_names) / sizeof(op_names[0]); k++) {
                if (slice_eq(v, slice_cstr(op_names[k]))) {
                    break;
                }
            }
            if (k == sizeof(op_names) / sizeof(op_names[0])) {
                return -1;
            }
            out->op = (enum mutation_op)k;
            have_op = 1;
        } else if (slice_eq(f, SLICE_LIT("bucket"))) {
            out->bucket = v;
            have_bucket = v.len > 0;
        } else if (slice_eq(f, SLICE_LIT("key"))) {
            out->key = v;
            have_key = v.len > 0;
        } else if (slice_eq(f, SLICE_LIT("stamp"))) {
            if (stamp_parse(v, &st) != 0) {
                return -1;
            }
            out->stamp = v;
            have_stamp = 1;
        } else if (slice_eq(f, SLICE_LIT("vv"))) {
            if (vv_parse(v, &vv) != 0) {
                return -1;
            }
            out->vv = v;
        } else if (slice_eq(f, SLICE_LIT("etag"))) {
            out->etag = v;
        } else if (slice_eq(f, SLICE_LIT("size"))) {
            if (parse_i64(v, &out->size) != 0 || out->size < -1) {
                return -1;
            }
        } else if (slice_eq(f, SLICE_LIT("tags"))) {
            out->tags = v;
        } else if (slice_eq(f, SLICE_LIT("parts"))) {
            if (!parts_valid(v)) {
                return -1;
            }
            out->parts = v;
        } else if (slice_eq(f, SLICE_LIT("time"))) {
            if (parse_i64(v, &out->time_ms) != 0 || out->time_ms < 0) {
                return -1;
            }
        }
    }
    return have_op && have_bucket && have_key && have_stamp ? 0 : -1;
}
