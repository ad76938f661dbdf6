/*
 * s3addr.h - which bucket, which key, which S3 API call: addressing of one request.
 *
 * Input is what any front end has (method, request target, Host or :authority); output is
 * decoded bucket and key, decoded query parameters and the S3 operation, which drives
 * logging, authorisation rules and replication. Sans-I/O; every string lives in a pool.
 *
 * Errors (s3addr_parse returns PX_EINVAL; the codes are in proxy/s3err.h):
 *   InvalidURI        path not starting with '/', bad %-escape, %00, or a key with a "." or
 *                     ".." segment (stores and intermediaries may normalise those away, so
 *                     the store would write a different key, or bucket, than we authorised
 *                     and replicate)
 *   InvalidBucketName bucket name outside the accepted set (see below)
 *   KeyTooLongError   key above 1024 bytes once decoded
 *   InvalidArgument   UploadPart / UploadPartCopy whose partNumber is not 1 to 10000 (AWS's
 *                     range; RGW would store part 0 or 10001)
 * Requests whose method and sub-resources name no operation we know are not errors: they
 * parse with op S3_OP_UNKNOWN, and the caller decides (s3_op_is_mutation() is 0 for them).
 */
#ifndef S3TEE_PROXY_S3ADDR_H
#define S3TEE_PROXY_S3ADDR_H

#include <stddef.h>

#include "common/pool.h"
#include "common/slice.h"

enum s3_op {
    S3_OP_UNKNOWN,                /* no operation we recognise */
    S3_OP_LIST_BUCKETS,           /* GET / */
    S3_OP_CREATE_BUCKET,          /* PUT /b */
    S3_OP_DELETE_BUCKET,          /* DELETE /b */
    S3_OP_HEAD_BUCKET,            /* HEAD /b */
    S3_OP_LIST_OBJECTS,           /* GET /b */
    S3_OP_LIST_OBJECTS_V2,        /* GET /b?list-type=2 */
    S3_OP_LIST_OBJECT_VERSIONS,   /* GET /b?versions */
    S3_OP_LIST_MULTIPART_UPLOADS, /* GET /b?uploads */
    S3_OP_GET_BUCKET_CONFIG,      /* GET /b?versioning, ?lifecycle, ?policy, ?tagging ... */
    S3_OP_PUT_BUCKET_CONFIG,      /* PUT of the same */
    S3_OP_DELETE_BUCKET_CONFIG,   /* DELETE of the same */
    S3_OP_GET_OBJECT,             /* GET /b/k */
    S3_OP_HEAD_OBJECT,            /* HEAD /b/k */
    S3_OP_PUT_OBJECT,             /* PUT /b/k */
    S3_OP_COPY_OBJECT,            /* PUT /b/k with x-amz-copy-source */
    S3_OP_DELETE_OBJECT,          /* DELETE /b/k */
    S3_OP_DELETE_OBJECTS,         /* POST /b?delete */
    S3_OP_CREATE_MULTIPART,       /* POST /b/k?uploads */
    S3_OP_UPLOAD_PART,            /* PUT /b/k?partNumber&uploadId */
    S3_OP_UPLOAD_PART_COPY,       /* the same with x-amz-copy-source */
    S3_OP_COMPLETE_MULTIPART,     /* POST /b/k?uploadId */
    S3_OP_ABORT_MULTIPART,        /* DELETE /b/k?uploadId */
    S3_OP_LIST_PARTS,             /* GET /b/k?uploadId */
    S3_OP_GET_OBJECT_TAGGING,     /* GET /b/k?tagging */
    S3_OP_PUT_OBJECT_TAGGING,     /* PUT /b/k?tagging */
    S3_OP_DELETE_OBJECT_TAGGING,  /* DELETE /b/k?tagging */
    S3_OP_GET_OBJECT_CONFIG,      /* GET /b/k?acl, ?retention, ?legal-hold, ?attributes, ?torrent */
    S3_OP_PUT_OBJECT_CONFIG,      /* PUT /b/k?acl, ?retention, ?legal-hold */
    S3_OP_POST_OBJECT,            /* POST /b (browser form upload): not supported */
};

/*
 * AWS API name of OP ("PutObject", "ListObjectsV2", ...), static. The grouped config ops
 * have names of ours ("GetBucketConfig", "PutObjectConfig"): the sub-resource says which.
 */
const char *s3_op_name(enum s3_op op);
/*
 * 1 for operations that change object data or object metadata, the ones replication
 * follows: PutObject, CopyObject, DeleteObject, DeleteObjects, CompleteMultipartUpload,
 * Put/DeleteObjectTagging, PutObjectConfig. Bucket-level changes and the steps of a
 * multipart upload before Complete are not.
 */
int s3_op_is_mutation(enum s3_op op);

struct s3_param {
    struct slice name;  /* percent-decoded (pool) */
    struct slice value; /* percent-decoded (pool); empty when has_value is 0 */
    int has_value;      /* "?uploads" has none, "?prefix=" has an empty one */
};

struct s3_addr {
    struct slice bucket;     /* decoded; empty for ListBuckets; lowercased when from Host */
    struct slice key;        /* decoded object key (pool); empty when none */
    int has_key;             /* 1 when the request names an object */
    int virtual_host;        /* 1 when the bucket came from the Host header */
    struct slice raw_path;   /* path as sent, before '?' (borrowed from TARGET) */
    struct slice raw_query;  /* query as sent, without '?' (borrowed from TARGET) */
    struct s3_param *params; /* query parameters in order (pool array) */
    size_t nparams;          /* entries in params */
    enum s3_op op;           /* the S3 API call */
    const char *subresource; /* static name of the sub-resource that decided op, or NULL */
};

/* Flags for s3addr_parse(): request headers that change the operation. */
#define S3ADDR_COPY_SOURCE 0x1u /* x-amz-copy-source present: PUT is a copy */

/*
 * s3addr_parse - address a request.
 * METHOD as sent ("PUT"); TARGET origin-form "path?query" (http1 reduces absolute-form);
 * HOST the Host header or :authority, a port allowed, may be empty; VHOST_DOMAINS the
 * configured virtual-host domains (NVHOST of them, "s3.example.com"). FLAGS is a mask of
 * S3ADDR_* describing headers the operation depends on; headers are passed as flags rather
 * than looked up so that h1 and h2 front ends call this the same way.
 *
 * Path-style: "/" is the service, "/b" and "/b/" the bucket, "/b/k..." the key, which is
 * everything after the first '/' following the bucket ("/b//a" is key "/a", "/b/d/" is
 * "d/"). Virtual-host: when HOST without its port equals "<bucket>.<domain>"
 * (case-insensitive; the longest matching domain wins), the bucket comes from HOST and the
 * whole path minus its leading '/' is the key. HOST equal to a configured domain (even one
 * that is also "<x>.<another domain>"), or matching none, means path-style. '+' in the path is a
 * plus; in the query too (S3 clients encode spaces as %20).
 *
 * Bucket names: 3 to 255 bytes of [A-Za-z0-9._-] starting with a letter or digit. That is
 * AWS's 3..63 [a-z0-9.-] widened to the legacy names RGW still accepts (uppercase, '_').
 *
 * Returns PX_OK with OUT filled (strings in P, raw slices borrowed from TARGET), or
 * PX_EINVAL with *ERR_CODE (S3 code) and *ERR_MSG (client-safe message) set, both static.
 */
int s3addr_parse(struct pool *p, struct slice method, struct slice target, struct slice host,
                 char *const *vhost_domains, size_t nvhost, unsigned flags, struct s3_addr *out,
                 const char **err_code, const char **err_msg);

/* First query parameter named exactly NAME (after decoding), or NULL. Borrowed from A. */
const struct s3_param *s3addr_param(const struct s3_addr *a, const char *name);

/*
 * s3addr_upstream_path - the path-style path to send to the store, NUL-terminated in P:
 * "/" for the service, "/bucket" for a bucket, "/bucket/" + S3-encoded key ('/' kept)
 * for an object. Virtual-host requests come out path-style too. No query.
 */
char *s3addr_upstream_path(struct pool *p, const struct s3_addr *a);

#endif
