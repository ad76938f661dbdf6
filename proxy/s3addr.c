/* s3addr.c - S3 addressing: bucket, key, query and operation of a request (see s3addr.h). */
#include "proxy/s3addr.h"

#include <ctype.h>
#include <string.h>

#include "common/status.h"
#include "signing/uri.h"

#define S3ADDR_KEY_MAX 1024   /* AWS's limit on a key's UTF-8 bytes */
#define S3ADDR_PART_MAX 10000 /* AWS's highest part number (RGW takes any, 0 too) */
#define S3ADDR_BUCKET_MAX 255 /* legacy (RGW) limit; AWS's current one is 63 */
#define S3ADDR_BUCKET_MIN 3

static const char *const op_names[] = {
    [S3_OP_UNKNOWN] = "Unknown",
    [S3_OP_LIST_BUCKETS] = "ListBuckets",
    [S3_OP_CREATE_BUCKET] = "CreateBucket",
    [S3_OP_DELETE_BUCKET] = "DeleteBucket",
    [S3_OP_HEAD_BUCKET] = "HeadBucket",
    [S3_OP_LIST_OBJECTS] = "ListObjects",
    [S3_OP_LIST_OBJECTS_V2] = "ListObjectsV2",
    [S3_OP_LIST_OBJECT_VERSIONS] = "ListObjectVersions",
    [S3_OP_LIST_MULTIPART_UPLOADS] = "ListMultipartUploads",
    [S3_OP_GET_BUCKET_CONFIG] = "GetBucketConfig",
    [S3_OP_PUT_BUCKET_CONFIG] = "PutBucketConfig",
    [S3_OP_DELETE_BUCKET_CONFIG] = "DeleteBucketConfig",
    [S3_OP_GET_OBJECT] = "GetObject",
    [S3_OP_HEAD_OBJECT] = "HeadObject",
    [S3_OP_PUT_OBJECT] = "PutObject",
    [S3_OP_COPY_OBJECT] = "CopyObject",
    [S3_OP_DELETE_OBJECT] = "DeleteObject",
    [S3_OP_DELETE_OBJECTS] = "DeleteObjects",
    [S3_OP_CREATE_MULTIPART] = "CreateMultipartUpload",
    [S3_OP_UPLOAD_PART] = "UploadPart",
    [S3_OP_UPLOAD_PART_COPY] = "UploadPartCopy",
    [S3_OP_COMPLETE_MULTIPART] = "CompleteMultipartUpload",
    [S3_OP_ABORT_MULTIPART] = "AbortMultipartUpload",
    [S3_OP_LIST_PARTS] = "ListParts",
    [S3_OP_GET_OBJECT_TAGGING] = "GetObjectTagging",
    [S3_OP_PUT_OBJECT_TAGGING] = "PutObjectTagging",
    [S3_OP_DELETE_OBJECT_TAGGING] = "DeleteObjectTagging",
    [S3_OP_GET_OBJECT_CONFIG] = "GetObjectConfig",
    [S3_OP_PUT_OBJECT_CONFIG] = "PutObjectConfig",
    [S3_OP_POST_OBJECT] = "PostObject",
};

const char *
s3_op_name(enum s3_op op)
{
    if ((size_t)op >= sizeof(op_names) / sizeof(op_names[0]) || op_names[op] == NULL) {
        return "Unknown";
    }
    return op_names[op];
}

int
s3_op_is_mutation(enum s3_op op)
{
    switch (op) {
    case S3_OP_PUT_OBJECT:
    case S3_OP_COPY_OBJECT:
    case S3_OP_DELETE_OBJECT:
    case S3_OP_DELETE_OBJECTS:
    case S3_OP_COMPLETE_MULTIPART:
    case S3_OP_PUT_OBJECT_TAGGING:
    case S3_OP_DELETE_OBJECT_TAGGING:
    case S3_OP_PUT_OBJECT_CONFIG:
        return 1;
    default:
        return 0;
    }
}

/* Bucket sub-resources that read, replace or remove one piece of bucket configuration. */
/* clang-format off */
static const char *const bucket_config_subs[] = {
    "accelerate", "acl", "analytics", "cors", "encryption", "intelligent-tiering",
    "inventory", "lifecycle", "location", "logging", "metrics", "notification",
    "object-lock", "ownershipControls", "policy", "policyStatus", "publicAccessBlock",
    "replication", "requestPayment", "tagging", "versioning", "website", NULL,
};
/* clang-format on */

/* Object sub-resources with a GET and a PUT (no DELETE in the S3 API). */
static const char *const object_config_subs[] = {"acl", "retention", "legal-hold", NULL};
/* Object sub-resources that are read-only. */
static const char *const object_read_subs[] = {"attributes", "torrent", NULL};
/* Object sub-resources we know but do not model: the op stays unknown, the name is kept. */
static const char *const object_other_subs[] = {"restore", "select", NULL};

static int
fail(const char **err_code, const char **err_msg, const char *code, const char *msg)
{
    *err_code = code;
    *err_msg = msg;
    return PX_EINVAL;
}

/* The first name of LIST present as a parameter (static string), or NULL. */
static const char *
first_sub(const struct s3_addr *a, const char *const *list)
{
    for (; *list != NULL; list++) {
        if (s3addr_param(a, *list) != NULL) {
            return *list;
        }
    }
    return NULL;
}

static const char *
one_sub(const struct s3_addr *a, const char *name)
{
    const char *list[2] = {name, NULL};

    return first_sub(a, list);
}

static int
bucket_name_ok(struct slice b)
{
    size_t i;

    if (b.len < S3ADDR_BUCKET_MIN || b.len > S3ADDR_BUCKET_MAX ||
        !isalnum((unsigned char)b.ptr[0])) {
        return 0;
    }
    for (i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)b.ptr[i];

        if (!isalnum(c) && c != '.' && c != '-' && c != '_') {
            return 0;
        }
    }
    return 1;
}

/* "." or ".." as a '/'-separated segment of KEY. */
static int
has_dot_segment(struct slice key)
{
    size_t start = 0, i;

    for (i = 0; i <= key.len; i++) {
        if (i == key.len || key.ptr[i] == '/') {
            size_t n = i - start;

            if ((n == 1 && key.ptr[start] == '.') ||
                (n == 2 && key.ptr[start] == '.' && key.ptr[start + 1] == '.')) {
                return 1;
            }
            start = i + 1;
        }
    }
    return 0;
}

/*
 * The bucket of a virtual-host request: HOST minus port and a trailing dot is
 * "<bucket>.<domain>" for the longest such configured domain, unless HOST is itself one of
 * the domains. Returns the bucket part (borrowed from HOST), or an empty slice for path-style.
 */
static struct slice
vhost_bucket(struct slice host, char *const *domains, size_t ndomains)
{
    struct slice best = SLICE_NULL;
    size_t best_dl = 0, i;
    long colon;

    if (host.len == 0 || host.ptr[0] == '[') {
        return best; /* IPv6 literal: never a bucket */
    }
    colon = slice_index(host, ':');
    if (colon >= 0) {
        host.len = (size_t)colon;
    }
    if (host.len > 0 && host.ptr[host.len - 1] == '.') {
        host.len--;
    }
    for (i = 0; i < ndomains; i++) {
        struct slice d = slice_cstr(domains[i]);

        if (d.len > 0 && d.ptr[d.len - 1] == '.') {
            d.len--;
        }
        if (slice_eq_nocase(host, d)) {
            /* a domain itself is the path-style endpoint, even when it also looks like
             * "<bucket>.<shorter domain>" (s3.example.com next to example.com) */
            return SLICE_NULL;
        }
        if (d.len == 0 || host.len <= d.len + 1 || d.len <= best_dl) {
            continue;
        }
        if (host.ptr[host.len - d.len - 1] == '.' &&
            slice_eq_nocase(slice_make(host.ptr + host.len - d.len, d.len), d)) {
            best = slice_make(host.ptr, host.len - d.len - 1);
            best_dl = d.len;
        }
    }
    return best;
}

/* Splits the query on '&' into decoded parameters; empty elements ("a&&b") are skipped. */
static int
parse_query(struct pool *p, struct slice q, struct s3_addr *out)
{
    size_t n = 1, i;

    for (i = 0; i < q.len; i++) {
        n += q.ptr[i] == '&';
    }
    out->params = pool_alloc(p, n * sizeof(*out->params));
    out->nparams = 0;
    while (q.len > 0) {
        long amp = slice_index(q, '&');
        size_t len = amp < 0 ? q.len : (size_t)amp;
        struct slice el = slice_make(q.ptr, len);

        if (len > 0) {
            struct s3_param *prm = &out->params[out->nparams];
            long eq = slice_index(el, '=');
            struct slice name = eq < 0 ? el : slice_make(el.ptr, (size_t)eq);
            struct slice value = eq < 0 ? slice_make(el.ptr + len, 0)
                                        : slice_make(el.ptr + eq + 1, len - (size_t)eq - 1);

            prm->has_value = eq >= 0;
            if (uri_decode_pool(p, name, 0, &prm->name) != 0 ||
                uri_decode_pool(p, value, 0, &prm->value) != 0) {
                return -1;
            }
            out->nparams++;
        }
        q.ptr += len;
        q.len -= len;
        if (q.len > 0) {
            q.ptr++; /* the '&' */
            q.len--;
        }
    }
    return 0;
}

static int
method_is(struct slice m, const char *name)
{
    return slice_eq(m, slice_cstr(name));
}

/* Operation on the service (no bucket). */
static enum s3_op
service_op(struct slice m)
{
    return method_is(m, "GET") ? S3_OP_LIST_BUCKETS : S3_OP_UNKNOWN;
}

static enum s3_op
bucket_op(struct slice m, struct s3_addr *a)
{
    const char *sub;

    if ((sub = one_sub(a, "uploads")) != NULL) {
        a->subresource = sub;
        return method_is(m, "GET") ? S3_OP_LIST_MULTIPART_UPLOADS : S3_OP_UNKNOWN;
    }
    if ((sub = one_sub(a, "versions")) != NULL) {
        a->subresource = sub;
        return method_is(m, "GET") ? S3_OP_LIST_OBJECT_VERSIONS : S3_OP_UNKNOWN;
    }
    if ((sub = one_sub(a, "delete")) != NULL) {
        a->subresource = sub;
        return method_is(m, "POST") ? S3_OP_DELETE_OBJECTS : S3_OP_UNKNOWN;
    }
    if ((sub = first_sub(a, bucket_config_subs)) != NULL) {
        a->subresource = sub;
        if (method_is(m, "GET")) {
            return S3_OP_GET_BUCKET_CONFIG;
        }
        if (method_is(m, "PUT")) {
            return S3_OP_PUT_BUCKET_CONFIG;
        }
        return method_is(m, "DELETE") ? S3_OP_DELETE_BUCKET_CONFIG : S3_OP_UNKNOWN;
    }
    if (method_is(m, "GET")) {
        const struct s3_param *lt = s3addr_param(a, "list-type");

        if (lt != NULL && slice_eq(lt->value, SLICE_LIT("2"))) {
            a->subresource = "list-type";
            return S3_OP_LIST_OBJECTS_V2;
        }
        return S3_OP_LIST_OBJECTS;
    }
    if (method_is(m, "HEAD")) {
        return S3_OP_HEAD_BUCKET;
    }
    if (method_is(m, "PUT")) {
        return S3_OP_CREATE_BUCKET;
    }
    if (method_is(m, "DELETE")) {
        return S3_OP_DELETE_BUCKET;
    }
    return method_is(m, "POST") ? S3_OP_POST_OBJECT : S3_OP_UNKNOWN;
}

static enum s3_op
object_op(struct slice m, struct s3_addr *a, unsigned flags)
{
    int copy = (flags & S3ADDR_COPY_SOURCE) != 0;
    const char *sub;

    if ((sub = one_sub(a, "uploadId")) != NULL) {
        a->subresource = sub;
        if (method_is(m, "PUT")) {
            if (s3addr_param(a, "partNumber") == NULL) {
                return S3_OP_UNKNOWN;
            }
            return copy ? S3_OP_UPLOAD_PART_COPY : S3_OP_UPLOAD_PART;
        }
        if (method_is(m, "POST")) {
            return S3_OP_COMPLETE_MULTIPART;
        }
        if (method_is(m, "DELETE")) {
            return S3_OP_ABORT_MULTIPART;
        }
        return method_is(m, "GET") ? S3_OP_LIST_PARTS : S3_OP_UNKNOWN;
    }
    if ((sub = one_sub(a, "uploads")) != NULL) {
        a->subresource = sub;
        return method_is(m, "POST") ? S3_OP_CREATE_MULTIPART : S3_OP_UNKNOWN;
    }
    if ((sub = one_sub(a, "tagging")) != NULL) {
        a->subresource = sub;
        if (method_is(m, "GET")) {
            return S3_OP_GET_OBJECT_TAGGING;
        }
        if (method_is(m, "PUT")) {
            return S3_OP_PUT_OBJECT_TAGGING;
        }
        return method_is(m, "DELETE") ? S3_OP_DELETE_OBJECT_TAGGING : S3_OP_UNKNOWN;
    }
    if ((sub = first_sub(a, object_config_subs)) != NULL) {
        a->subresource = sub;
        if (method_is(m, "GET")) {
            return S3_OP_GET_OBJECT_CONFIG;
        }
        return method_is(m, "PUT") ? S3_OP_PUT_OBJECT_CONFIG : S3_OP_UNKNOWN;
    }
    if ((sub = first_sub(a, object_read_subs)) != NULL) {
        a->subresource = sub;
        return method_is(m, "GET") ? S3_OP_GET_OBJECT_CONFIG : S3_OP_UNKNOWN;
    }
    if ((sub = first_sub(a, object_other_subs)) != NULL) {
        a->subresource = sub;
        return S3_OP_UNKNOWN;
    }
    if (method_is(m, "GET")) {
        return S3_OP_GET_OBJECT;
    }
    if (method_is(m, "HEAD")) {
        return S3_OP_HEAD_OBJECT;
    }
    if (method_is(m, "PUT")) {
        return copy ? S3_OP_COPY_OBJECT : S3_OP_PUT_OBJECT;
    }
    return method_is(m, "DELETE") ? S3_OP_DELETE_OBJECT : S3_OP_UNKNOWN;
}

int
s3addr_parse(struct pool *p, struct slice method, struct slice target, struct slice host,
             char *const *vhost_domains, size_t nvhost, unsigned flags, struct s3_addr *out,
             const char **err_code, const char **err_msg)
{
    long qmark = slice_index(target, '?');
    struct slice path, raw_key = SLICE_NULL, vb;

    memset(out, 0, sizeof(*out));
    *err_code = NULL;
    *err_msg = NULL;
    out->raw_path = qmark < 0 ? target : slice_make(target.ptr, (size_t)qmark);
    out->raw_query = qmark < 0 ? slice_make(target.ptr + target.len, 0)
                               : slice_make(target.ptr + qmark + 1, target.len - (size_t)qmark - 1);
    path = out->raw_path;
    if (path.len == 0 || path.ptr[0] != '/') {
        return fail(err_code, err_msg, "InvalidURI", "the request path must start with '/'");
    }
    if (parse_query(p, out->raw_query, out) != 0) {
        return fail(err_code, err_msg, "InvalidURI", "invalid percent-encoding in the query");
    }

    vb = vhost_bucket(host, vhost_domains, nvhost);
    if (vb.len > 0) {
        char *lower = pool_strndup(p, vb.ptr, vb.len);
        size_t i;

        for (i = 0; i < vb.len; i++) {
            lower[i] = (char)tolower((unsigned char)lower[i]); /* DNS names are caseless */
        }
        out->bucket = slice_make(lower, vb.len);
        out->virtual_host = 1;
        raw_key = slice_make(path.ptr + 1, path.len - 1);
    } else if (path.len > 1) {
        struct slice rest = slice_make(path.ptr + 1, path.len - 1);
        long slash = slice_index(rest, '/');
        struct slice raw_bucket = slash < 0 ? rest : slice_make(rest.ptr, (size_t)slash);

        if (slash >= 0) {
            raw_key = slice_make(rest.ptr + slash + 1, rest.len - (size_t)slash - 1);
        }
        if (uri_decode_pool(p, raw_bucket, 0, &out->bucket) != 0) {
            return fail(err_code, err_msg, "InvalidURI", "invalid percent-encoding in the path");
        }
    }
    if ((out->virtual_host || path.len > 1) && !bucket_name_ok(out->bucket)) {
        return fail(err_code, err_msg, "InvalidBucketName", "the specified bucket is not valid");
    }

    if (raw_key.len > 0) {
        if (uri_decode_pool(p, raw_key, 0, &out->key) != 0) {
            return fail(err_code, err_msg, "InvalidURI", "invalid percent-encoding in the path");
        }
        if (out->key.len > S3ADDR_KEY_MAX) {
            return fail(err_code, err_msg, "KeyTooLongError", "your key is too long");
        }
        if (has_dot_segment(out->key)) {
            return fail(err_code, err_msg, "InvalidURI",
                        "object keys with '.' or '..' path segments are not accepted");
        }
        out->has_key = 1;
    } else {
        out->key = slice_make("", 0);
    }

    if (out->bucket.len == 0) {
        out->op = service_op(method);
    } else if (!out->has_key) {
        out->op = bucket_op(method, out);
    } else {
        out->op = object_op(method, out, flags);
    }
    if (out->op == S3_OP_UPLOAD_PART || out->op == S3_OP_UPLOAD_PART_COPY) {
        const struct s3_param *pn = s3addr_param(out, "partNumber");
        uint64_t n;

        if (pn == NULL || slice_to_u64(pn->value, &n) != 0 || n < 1 || n > S3ADDR_PART_MAX) {
            return fail(err_code, err_msg, "InvalidArgument",
                        "Part number must be an integer between 1 and 10000, inclusive");
        }
    }
    return PX_OK;
}

const struct s3_param *
s3addr_param(const struct s3_addr *a, const char *name)
{
    struct slice n = slice_cstr(name);
    size_t i;

    for (i = 0; i < a->nparams; i++) {
        if (slice_eq(a->params[i].name, n)) {
            return &a->params[i];
        }
    }
    return NULL;
}

char *
s3addr_upstream_path(struct pool *p, const struct s3_addr *a)
{
    if (a->bucket.len == 0) {
        return pool_strndup(p, "/", 1);
    }
    if (!a->has_key) {
        return pool_printf(p, "/%.*s", SLICE_ARGS(a->bucket));
    }
    /* bucket names are all unreserved characters (bucket_name_ok), so they need no encoding */
    return pool_printf(p, "/%.*s/%s", SLICE_ARGS(a->bucket), uri_encode_pool(p, a->key, 1));
}
