/*
 * mutation.h - one replicated change, as stored in the s3tee:log stream and carried to
 * peers. Sans-I/O: encodes to and decodes from stream field/value pairs.
 */
#ifndef S3TEE_QUEUE_MUTATION_H
#define S3TEE_QUEUE_MUTATION_H

#include <stddef.h>
#include <stdint.h>

#include "common/slice.h"

enum mutation_op {
    MUT_PUT = 0,      /* object bytes + metadata + tags (PutObject, CopyObject, Complete) */
    MUT_DELETE,       /* delete (DeleteObject, one key of DeleteObjects) */
    MUT_TAGS,         /* tag set only (Put/DeleteObjectTagging) */
};

struct mutation {
    enum mutation_op op;      /* kind */
    struct slice bucket;      /* bucket */
    struct slice key;         /* key, any bytes */
    struct slice stamp;       /* data stamp (MUT_TAGS: the tag stamp) */
    struct slice vv;          /* vector after this write */
    struct slice etag;        /* ETag at the origin store (MUT_PUT) */
    int64_t size;             /* bytes (MUT_PUT), else -1 */
    struct slice tags;        /* URL-encoded tag set "k1=v1&k2=v2" (MUT_PUT, MUT_TAGS) */
    struct slice parts;       /* multipart: comma-separated part sizes, "" for a single PUT */
    int64_t time_ms;          /* when the origin accepted it (for lag metrics) */
};

#define MUTATION_NFIELDS 10   /* field/value pairs mutation_encode() produces at most */

const char *mutation_op_name(enum mutation_op op);      /* "put", "delete", "tags" */
/*
 * mutation_encode - field/value pairs for XADD: ARGV/ARGVLEN get 2 * n entries pointing into
 * M and into SCRATCH (>= 64 bytes, holds the numbers). Returns n pairs.
 */
size_t mutation_encode(const struct mutation *m, const char **argv, size_t *argvlen, char *scratch);
/* Decodes field/value pairs (slices into the reply). Unknown fields are ignored; missing
 * required fields (op, bucket, key, stamp) give -1. */
int mutation_decode(const struct slice *fields, size_t npairs, struct mutation *out);

#endif
