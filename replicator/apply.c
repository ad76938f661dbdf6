/*
 * apply.c - one stream entry -> the requests that apply it at one peer.
 *
 *   put        START -> STORE_GET --head, stamp ok--> PUT -> DONE
 *                          |                      (the GET body streams into the PUT)
 *                          +-- 404 / newer stamp: SUPERSEDED
 *   multipart  START -> STORE_HEAD -> CREATE -> {PART_GET -> PART_PUT} x nparts -> COMPLETE -> DONE
 *                                        |
 *                                        +-- failure once the upload exists: ABORT -> DONE (failed)
 *   delete     START -> DELETE -> DONE
 *   tags       START -> TAGS -> DONE
 *                         |  peer 404: TAGS_CHECK (HEAD the store; 404 here too: SUPERSEDED;
 *                         |  still here: UNAVAILABLE, retried without a limit). A proxy
 *                         |  records a tag change without an object (NoSuchKey) and says
 *                         |  applied, so this is left for NoSuchBucket and older proxies.
 *
 * Two legs at most are alive: SRC (the local store) and DST (the peer). curl callbacks only
 * record facts and kick step_ev; step() runs from the loop, never inside curl, decides,
 * and starts, resumes or aborts transfers (curl forbids adding handles from callbacks).
 * Bytes go SRC on_body -> pipe -> DST read_body; each side pauses when the pipe is full
 * (PIPE_MAX) or empty, and the other side's progress kicks step() to resume it.
 * stall_ev fails the apply when nothing moved for transfer_timeout.
 */
#include "replicator/apply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "queue/stamp.h"
#include "signing/uri.h"

#define PIPE_MAX (1024 * 1024)  /* bytes buffered between the store and the peer */
#define CAPTURE_MAX (64 * 1024) /* response bodies kept: errors, Create/Complete results */
#define MAX_PARTS 10000         /* S3's limit */
#define MAX_PART_SIZE (5LL * 1024 * 1024 * 1024)

enum apply_state {
    AS_START = 0,  /* plan the entry (first step() run) */
    AS_STORE_GET,  /* put: GET from the store, waiting for its head */
    AS_PUT,        /* put: the GET body streams into the peer's PUT */
    AS_STORE_HEAD, /* multipart: HEAD at the store (stamp, size, metadata) */
    AS_CREATE,     /* multipart: CreateMultipartUpload at the peer */
    AS_PART_GET,   /* multipart: GET one part's range, waiting for its head */
    AS_PART_PUT,   /* multipart: the range streams into UploadPart */
    AS_COMPLETE,   /* multipart: CompleteMultipartUpload */
    AS_ABORT,      /* multipart: AbortMultipartUpload after a failure, then report it */
    AS_DELETE,     /* delete at the peer */
    AS_TAGS,       /* PUT ?tagging at the peer */
    AS_TAGS_CHECK, /* the peer had no object to tag: is it still here? */
    AS_DONE,       /* reported; about to be freed */
};

/* One HTTP transfer and what we keep of its response. */
struct leg {
    struct apply *a;            /* owner */
    struct upstream_xfer *x;    /* running transfer; NULL before start and once done */
    int status;                 /* response status, 0 until the head */
    int64_t content_length;     /* response Content-Length, -1 if absent */
    int64_t received;           /* response body bytes taken into the pipe */
    unsigned head : 1;          /* the response head is complete */
    unsigned done : 1;          /* finished, aborted or never started */
    unsigned paused : 1;        /* SRC: on_body said pause; DST: read_body said pause */
    unsigned has_stamp : 1;     /* SRC: x-amz-meta-s3tee-stamp was present */
    const char *err;            /* transport error (upstream_err_*), NULL if none */
    char stamp[STAMP_TEXT_MAX]; /* SRC: x-amz-meta-s3tee-stamp */
    char etag[128];             /* ETag of the response */
    char result[16];            /* DST: x-s3tee-result ("applied", "stale", "future") */
    char date[64];              /* DST: Date, for the clock skew of a "future" answer */
    struct evbuffer *capture;   /* response body of errors and small results (owned) */
};

struct apply {
    const struct apply_ctx *ctx; /* shared settings (borrowed) */
    struct site *peer;           /* where the entry goes (borrowed) */
    const struct mutation *m;    /* the entry (borrowed until the callback) */
    apply_cb cb;                 /* completion, exactly once */
    void *arg;                   /* for cb */
    enum apply_state state;      /* see the diagram */
    struct apply_plan plan;      /* what the entry turns into */
    struct pool pool;            /* plan, object headers, part ETags, upload id */
    struct event *step_ev;       /* runs step() from the loop (owned) */
    struct event *stall_ev;      /* transfer_timeout watchdog (owned) */
    int64_t last_progress_ms;    /* monotonic time anything last moved */
    struct leg src;              /* the local store */
    struct leg dst;              /* the peer */
    struct evbuffer *pipe;       /* store -> peer bytes in transit (owned) */
    int64_t body_len;            /* DST request body length (-1 none) */
    int64_t sent;                /* DST request body bytes handed to curl */
    struct slice mem;            /* DST in-memory body (tagging, part list) */
    struct sigv4_header *meta;   /* object headers from the store (pool) */
    size_t nmeta;                /* entries in meta */
    size_t capmeta;              /* room in meta */
    unsigned want_meta : 1;      /* keep the SRC response's object headers */
    unsigned cancelled : 1;      /* apply_cancel() was called */
    size_t part;                 /* multipart: current part, 0-based */
    int64_t part_off;            /* multipart: its first byte in the object */
    char **etags;                /* multipart: the peer's ETag per part (pool) */
    char *upload_id;             /* multipart: the peer's upload id (pool), NULL before */
    enum apply_outcome pend;     /* AS_ABORT: the outcome to report afterwards */
    int pend_status;             /* AS_ABORT: its status */
    int64_t skew_ms;             /* FUTURE: stamp minus peer Date */
    int skew_known;              /* FUTURE: skew_ms is set */
    char peer_etag[128];         /* the ETag the peer gave the object (applied puts) */
    char reason[512];            /* why, for the result */
};

const char *
apply_outcome_name(enum apply_outcome o)
{
    switch (o) {
    case APPLY_APPLIED:
        return "applied";
    case APPLY_STALE:
        return "stale";
    case APPLY_SUPERSEDED:
        return "superseded";
    case APPLY_FUTURE:
        return "future";
    case APPLY_FAILED:
        return "failed";
    case APPLY_UNAVAILABLE:
        return "unavailable";
    case APPLY_INVALID:
        return "invalid";
    case APPLY_CANCELLED:
        return "cancelled";
    }
    return "?";
}

/* --- planning and request building (pure) ---------------------------------------------- */

/* 1 if S can be a header value: no control characters but tab. */
static int
header_safe(struct slice s)
{
    size_t i;

    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* Appends S to OUT (of room for 6*len+1) with XML escaping; -1 on a character XML refuses. */
static int
xml_escape(struct slice s, char *out, size_t *outlen)
{
    size_t i, n = *outlen;

    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        const char *rep = NULL;

        switch (c) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        case '\t':
            rep = "&#9;";
            break;
        case '\n':
            rep = "&#10;";
            break;
        case '\r':
            rep = "&#13;";
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                return -1;
            }
        }
        if (rep != NULL) {
            size_t rl = strlen(rep);

            memcpy(out + n, rep, rl);
            n += rl;
        } else {
            out[n++] = (char)c;
        }
    }
    *outlen = n;
    return 0;
}

char *
apply_tagging_xml(struct pool *p, struct slice tags)
{
    static const char head[] = "<Tagging><TagSet>", tail[] = "</TagSet></Tagging>";
    /* a tag's markup is 37 bytes and there are at most len/2+1 tags; a byte escapes to 6 */
    size_t cap = sizeof(head) + sizeof(tail) + (tags.len / 2 + 1) * 37 + tags.len * 6;
    char *out = pool_alloc(p, cap);
    size_t n, i = 0;

    memcpy(out, head, sizeof(head) - 1);
    n = sizeof(head) - 1;
    while (i < tags.len) {
        const char *amp = memchr(tags.ptr + i, '&', tags.len - i);
        struct slice pair, k, v, dk, dv;
        long eq;

        pair = slice_make(tags.ptr + i, amp ? (size_t)(amp - tags.ptr) - i : tags.len - i);
        i += pair.len + 1;
        if (pair.len == 0) {
            continue;
        }
        eq = slice_index(pair, '=');
        k = eq < 0 ? pair : slice_make(pair.ptr, (size_t)eq);
        v = eq < 0 ? SLICE_NULL : slice_make(pair.ptr + eq + 1, pair.len - (size_t)eq - 1);
        if (uri_decode_pool(p, k, 1, &dk) != 0 || dk.len == 0 ||
            uri_decode_pool(p, v, 1, &dv) != 0) {
            return NULL;
        }
        memcpy(out + n, "<Tag><Key>", 10);
        n += 10;
        if (xml_escape(dk, out, &n) != 0) {
            return NULL;
        }
        memcpy(out + n, "</Key><Value>", 13);
        n += 13;
        if (xml_escape(dv, out, &n) != 0) {
            return NULL;
        }
        memcpy(out + n, "</Value></Tag>", 14);
        n += 14;
    }
    memcpy(out + n, tail, sizeof(tail) - 1);
    n += sizeof(tail) - 1;
    out[n] = '\0';
    return out;
}

char *
apply_complete_xml(struct pool *p, char *const *etags, size_t n)
{
    size_t cap = 64, i, len = 0;
    char *out;

    for (i = 0; i < n; i++) {
        cap += 64 + strlen(etags[i]) * 6;
    }
    out = pool_alloc(p, cap);
    len = (size_t)sprintf(out, "<CompleteMultipartUpload>");
    for (i = 0; i < n; i++) {
        len += (size_t)sprintf(out + len, "<Part><PartNumber>%zu</PartNumber><ETag>", i + 1);
        if (xml_escape(slice_cstr(etags[i]), out, &len) != 0) {
            return NULL;
        }
        len += (size_t)sprintf(out + len, "</ETag></Part>");
    }
    sprintf(out + len, "</CompleteMultipartUpload>");
    return out;
}

/* "5242880,5242880,17" -> sizes in the pool; -1 if not such a list. */
static int
parse_parts(struct pool *p, struct slice s, struct apply_plan *out)
{
    size_t i, n = 1, k = 0;
    const char *q = s.ptr, *end = s.ptr + s.len;

    for (i = 0; i < s.len; i++) {
        n += s.ptr[i] == ',';
    }
    if (n > MAX_PARTS) {
        return -1;
    }
    out->part_size = pool_alloc(p, n * sizeof(int64_t));
    out->total = 0;
    while (q <= end) {
        const char *c = memchr(q, ',', (size_t)(end - q));
        struct slice num = slice_make(q, c ? (size_t)(c - q) : (size_t)(end - q));
        uint64_t v;

        if (slice_to_u64(num, &v) != 0 || v > (uint64_t)MAX_PART_SIZE) {
            return -1;
        }
        out->part_size[k++] = (int64_t)v;
        out->total += (int64_t)v;
        if (c == NULL) {
            break;
        }
        q = c + 1;
    }
    out->nparts = k;
    return k == n ? 0 : -1;
}

int
apply_plan_make(struct pool *p, const struct mutation *m, struct apply_plan *out, const char **why)
{
    struct stamp st;

    memset(out, 0, sizeof(*out));
    if (m->bucket.len == 0 || m->key.len == 0) {
        *why = "the entry has no bucket or no key";
        return -1;
    }
    if (stamp_parse(m->stamp, &st) != 0) {
        *why = "the entry's stamp does not parse";
        return -1;
    }
    if (!header_safe(m->vv) || !header_safe(m->etag) || !header_safe(m->tags)) {
        *why = "the entry has control characters in vv, etag or tags";
        return -1;
    }
    switch (m->op) {
    case MUT_PUT:
        if (m->parts.len == 0) {
            out->kind = APPLY_KIND_PUT;
            return 0;
        }
        out->kind = APPLY_KIND_MULTIPART;
        if (parse_parts(p, m->parts, out) != 0) {
            *why = "the entry's parts are not a list of up to 10000 sizes";
            return -1;
        }
        return 0;
    case MUT_DELETE:
        out->kind = APPLY_KIND_DELETE;
        return 0;
    case MUT_TAGS:
        out->kind = APPLY_KIND_PUT_TAGS;
        out->tagging_xml = apply_tagging_xml(p, m->tags);
        if (out->tagging_xml == NULL) {
            *why = "the entry's tags do not decode to a tag set";
            return -1;
        }
        return 0;
    }
    *why = "unknown op";
    return -1;
}

static char *
object_path(struct pool *p, const struct mutation *m)
{
    return pool_printf(p, "/%s/%s", uri_encode_pool(p, m->bucket, 0),
                       uri_encode_pool(p, m->key, 1));
}

void
apply_store_request(struct pool *p, const struct mutation *m, const char *method, int64_t off,
                    int64_t len, struct sites_request *out)
{
    struct sigv4_header *h = pool_alloc(p, sizeof(*h));

    memset(out, 0, sizeof(*out));
    out->method = method;
    out->path = object_path(p, m);
    out->query = "";
    out->payload = SIGV4_EMPTY_SHA256;
    if (len > 0) {
        h[0].name = SLICE_LIT("range");
        h[0].value = slice_cstr(
            pool_printf(p, "bytes=%lld-%lld", (long long)off, (long long)(off + len - 1)));
        out->headers = h;
        out->nheaders = 1;
    }
}

int
apply_copied_header(struct slice name)
{
    static const struct slice names[] = {
        SLICE_LIT("content-type"),
        SLICE_LIT("cache-control"),
        SLICE_LIT("content-disposition"),
        SLICE_LIT("content-encoding"),
        SLICE_LIT("content-language"),
        SLICE_LIT("expires"),
        SLICE_LIT("x-amz-website-redirect-location"),
    };
    size_t i;

    if (slice_starts_with(name, SLICE_LIT("x-amz-meta-"))) {
        return !slice_starts_with(name, SLICE_LIT("x-amz-meta-s3tee-"));
    }
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (slice_eq(name, names[i])) {
            return 1;
        }
    }
    return 0;
}

/* Content-MD5 (base64) and hex SHA-256 of an in-memory body. */
static void
body_digests(struct pool *p, struct slice body, const char **md5_b64, const char **sha_hex)
{
    unsigned char md5[16];
    unsigned int mlen = 0;
    char *b64 = pool_alloc(p, 32), *hex = pool_alloc(p, 65);

    EVP_Digest(body.ptr, body.len, md5, &mlen, EVP_md5(), NULL);
    EVP_EncodeBlock((unsigned char *)b64, md5, 16);
    sigv4_sha256_hex(body.ptr, body.len, hex);
    *md5_b64 = b64;
    *sha_hex = hex;
}

void
apply_peer_request(struct pool *p, const struct mutation *m, enum apply_step step,
                   const struct apply_peer_args *args, struct sites_request *out)
{
    struct sigv4_header *h = pool_alloc(p, sizeof(*h) * (args->nmeta + 9));
    const char *uid = args->upload_id ? uri_encode_pool(p, slice_cstr(args->upload_id), 0) : "";
    size_t n = 0, i;

    memset(out, 0, sizeof(*out));
    out->path = object_path(p, m);
    out->query = "";
    out->payload = "UNSIGNED-PAYLOAD";
    switch (step) {
    case APPLY_STEP_PUT:
        out->method = "PUT";
        break;
    case APPLY_STEP_CREATE:
        out->method = "POST";
        out->query = "uploads";
        break;
    case APPLY_STEP_PART:
        out->method = "PUT";
        out->query = pool_printf(p, "partNumber=%d&uploadId=%s", args->part, uid);
        break;
    case APPLY_STEP_COMPLETE:
        out->method = "POST";
        out->query = pool_printf(p, "uploadId=%s", uid);
        break;
    case APPLY_STEP_ABORT:
        out->method = "DELETE";
        out->query = pool_printf(p, "uploadId=%s", uid);
        break;
    case APPLY_STEP_DELETE:
        out->method = "DELETE";
        break;
    case APPLY_STEP_PUT_TAGS:
        out->method = "PUT";
        out->query = "tagging";
        break;
    }
    if (step == APPLY_STEP_PUT || step == APPLY_STEP_CREATE) {
        for (i = 0; i < args->nmeta; i++) {
            h[n++] = args->meta[i];
        }
        if (m->tags.len > 0) {
            h[n++] = (struct sigv4_header){SLICE_LIT("x-amz-tagging"), m->tags};
        }
    }
    if (step == APPLY_STEP_COMPLETE || step == APPLY_STEP_PUT_TAGS) {
        const char *md5, *sha;

        body_digests(p, args->body, &md5, &sha);
        h[n++] = (struct sigv4_header){SLICE_LIT("content-md5"), slice_cstr(md5)};
        h[n++] = (struct sigv4_header){SLICE_LIT("content-type"), SLICE_LIT("application/xml")};
        out->payload = sha;
    }
    h[n++] = (struct sigv4_header){SLICE_LIT("x-s3tee-stamp"), m->stamp};
    if (m->vv.len > 0) {
        h[n++] = (struct sigv4_header){SLICE_LIT("x-s3tee-vv"), m->vv};
    }
    if (m->etag.len > 0) {
        h[n++] = (struct sigv4_header){SLICE_LIT("x-s3tee-origin-etag"), m->etag};
    }
    if (m->op == MUT_PUT) {
        /* a PUT sets data and tags together: the tags it carries have the data stamp */
        h[n++] = (struct sigv4_header){SLICE_LIT("x-s3tee-tag-stamp"), m->stamp};
    }
    if (args->repair) {
        h[n++] = (struct sigv4_header){SLICE_LIT("x-s3tee-repair"), SLICE_LIT("1")};
    }
    out->headers = h;
    out->nheaders = n;
}

/* --- the state machine ------------------------------------------------------------------- */

static void step(struct apply *a);

static void
kick(struct apply *a)
{
    event_active(a->step_ev, 0, 0);
}

static void
progress(struct apply *a)
{
    a->last_progress_ms = timeutil_mono_ms();
}

static void
copy_value(char *dst, size_t cap, struct slice v)
{
    size_t n = v.len < cap - 1 ? v.len : cap - 1;

    memcpy(dst, v.ptr, n);
    dst[n] = '\0';
}

static int
is_2xx(int status)
{
    return status >= 200 && status < 300;
}

static void
capture(struct leg *l, const char *data, size_t len)
{
    size_t have = evbuffer_get_length(l->capture);

    if (have < CAPTURE_MAX) {
        evbuffer_add(l->capture, data, len < CAPTURE_MAX - have ? len : CAPTURE_MAX - have);
    }
}

/* The text of the first <TAG>...</TAG> in L's captured body (pool copy), or "". */
static const char *
captured_tag(struct apply *a, struct leg *l, const char *tag)
{
    size_t len = evbuffer_get_length(l->capture);
    const char *body = (const char *)evbuffer_pullup(l->capture, -1); /* bounded: CAPTURE_MAX */
    char open[64], close[64];
    const char *s, *e;

    if (body == NULL || len == 0) {
        return "";
    }
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    s = memmem(body, len, open, strlen(open));
    if (s == NULL) {
        return "";
    }
    s += strlen(open);
    e = memmem(s, len - (size_t)(s - body), close, strlen(close));
    if (e == NULL) {
        return "";
    }
    return pool_strndup(&a->pool, s, (size_t)(e - s));
}

/* &amp; &lt; &gt; &quot; &apos; and character references ("&#10;") decoded in place. */
static void
xml_unescape(char *s)
{
    static const struct {
        const char *ent;
        char ch;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    char *r = s, *w = s;
    size_t i, cl, k;

    while (*r != '\0') {
        /* "&#10;": a reference is longer than its UTF-8, so W stays behind R */
        if (*r == '&' && (k = slice_xml_charref(slice_make(r, strnlen(r, 16)), w, &cl)) != 0) {
            w += cl;
            r += k;
            continue;
        }
        if (*r == '&') {
            for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                size_t el = strlen(ents[i].ent);

                if (strncmp(r, ents[i].ent, el) == 0) {
                    *w++ = ents[i].ch;
                    r += el;
                    break;
                }
            }
            if (i < sizeof(ents) / sizeof(ents[0])) {
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = '\0';
}

/* leg callbacks: SRC (the store) */

static size_t
src_read_body(void *arg, char *buf, size_t max)
{
    (void)arg;
    (void)buf;
    (void)max;
    return 0;
}

static void
leg_on_header(void *arg, struct slice name, struct slice value)
{
    struct leg *l = arg;
    struct apply *a = l->a;

    if (slice_eq_nocase(name, SLICE_LIT("x-amz-meta-s3tee-stamp"))) {
        copy_value(l->stamp, sizeof(l->stamp), value);
        l->has_stamp = 1;
    } else if (slice_eq_nocase(name, SLICE_LIT("content-length"))) {
        uint64_t v;

        l->content_length = slice_to_u64(value, &v) == 0 ? (int64_t)v : -1;
    } else if (slice_eq_nocase(name, SLICE_LIT("etag"))) {
        copy_value(l->etag, sizeof(l->etag), value);
    } else if (slice_eq_nocase(name, SLICE_LIT("x-s3tee-result"))) {
        copy_value(l->result, sizeof(l->result), value);
    } else if (slice_eq_nocase(name, SLICE_LIT("date"))) {
        copy_value(l->date, sizeof(l->date), value);
    }
    if (l == &a->src && a->want_meta) {
        char *lower = pool_strndup(&a->pool, name.ptr, name.len);
        size_t i;

        for (i = 0; i < name.len; i++) {
            if (lower[i] >= 'A' && lower[i] <= 'Z') {
                lower[i] = (char)(lower[i] - 'A' + 'a');
            }
        }
        if (apply_copied_header(slice_make(lower, name.len)) && header_safe(value)) {
            if (a->nmeta == a->capmeta) {
                struct sigv4_header *nm;

                a->capmeta = a->capmeta ? a->capmeta * 2 : 16;
                nm = pool_alloc(&a->pool, sizeof(*nm) * a->capmeta);
                if (a->nmeta) {
                    memcpy(nm, a->meta, sizeof(*nm) * a->nmeta);
                }
                a->meta = nm;
            }
            a->meta[a->nmeta].name = slice_make(lower, name.len);
            a->meta[a->nmeta].value = pool_slice_dup(&a->pool, value);
            a->nmeta++;
        }
    }
}

static void
leg_on_head(void *arg, int status)
{
    struct leg *l = arg;

    l->status = status;
    l->head = 1;
    progress(l->a);
    kick(l->a);
}

static int
src_on_body(void *arg, const char *data, size_t len)
{
    struct leg *l = arg;
    struct apply *a = l->a;

    progress(a);
    if (!is_2xx(l->status)) {
        capture(l, data, len);
        return 0;
    }
    if (evbuffer_get_length(a->pipe) >= PIPE_MAX) {
        l->paused = 1;
        return 1;
    }
    evbuffer_add(a->pipe, data, len);
    l->received += (int64_t)len;
    if (a->dst.paused) {
        kick(a);
    }
    return 0;
}

static void
leg_on_done(void *arg, const char *errstr)
{
    struct leg *l = arg;

    l->x = NULL; /* freed by upstream before this call */
    l->done = 1;
    l->err = errstr;
    progress(l->a);
    kick(l->a);
}

static const struct upstream_xfer_ops src_ops = {
    .read_body = src_read_body,
    .on_header = leg_on_header,
    .on_head = leg_on_head,
    .on_body = src_on_body,
    .on_done = leg_on_done,
};

/* leg callbacks: DST (the peer) */

static size_t
dst_read_body(void *arg, char *buf, size_t max)
{
    struct leg *l = arg;
    struct apply *a = l->a;
    size_t want, n;

    if (a->sent >= a->body_len) {
        return 0;
    }
    want = (size_t)(a->body_len - a->sent) < max ? (size_t)(a->body_len - a->sent) : max;
    if (a->mem.ptr != NULL) {
        memcpy(buf, a->mem.ptr + a->sent, want);
        n = want;
    } else {
        int got = evbuffer_remove(a->pipe, buf, want);

        n = got > 0 ? (size_t)got : 0;
        if (n == 0) {
            l->paused = 1;
            return UPSTREAM_PAUSE;
        }
        if (a->src.paused && evbuffer_get_length(a->pipe) < PIPE_MAX / 2) {
            kick(a);
        }
    }
    a->sent += (int64_t)n;
    progress(a);
    return n;
}

static int
dst_on_body(void *arg, const char *data, size_t len)
{
    struct leg *l = arg;

    progress(l->a);
    capture(l, data, len);
    return 0;
}

static const struct upstream_xfer_ops dst_ops = {
    .read_body = dst_read_body,
    .on_header = leg_on_header,
    .on_head = leg_on_head,
    .on_body = dst_on_body,
    .on_done = leg_on_done,
};

/* --- legs --------------------------------------------------------------------------------- */

static void
leg_reset(struct leg *l)
{
    l->x = NULL;
    l->status = 0;
    l->content_length = -1;
    l->received = 0;
    l->head = l->done = l->paused = l->has_stamp = 0;
    l->err = NULL;
    l->stamp[0] = l->etag[0] = l->result[0] = l->date[0] = '\0';
    evbuffer_drain(l->capture, evbuffer_get_length(l->capture));
}

static void
leg_stop(struct leg *l)
{
    if (l->x != NULL) {
        upstream_abort(l->x);
        l->x = NULL;
    }
    l->done = 1;
}

static int
start_src(struct apply *a, const char *method, int64_t off, int64_t len, int want_meta)
{
    struct sites_request rq;
    struct pool tmp;

    leg_reset(&a->src);
    evbuffer_drain(a->pipe, evbuffer_get_length(a->pipe));
    a->want_meta = want_meta ? 1 : 0;
    pool_init(&tmp);
    apply_store_request(&tmp, a->m, method, off, len, &rq);
    a->src.x = sites_start(a->ctx->store, &tmp, &rq, -1, &src_ops, &a->src);
    pool_deinit(&tmp);
    progress(a);
    if (a->src.x == NULL) {
        a->src.done = 1;
        return -1;
    }
    return 0;
}

/* Starts the peer request of STEP; its body is BODY_LEN bytes from the pipe, or MEM. */
static int
start_dst(struct apply *a, enum apply_step stp, int64_t body_len, struct slice mem)
{
    struct apply_peer_args pa;
    struct sites_request rq;
    struct pool tmp;

    leg_reset(&a->dst);
    memset(&pa, 0, sizeof(pa));
    pa.part = (int)a->part + 1;
    pa.upload_id = a->upload_id;
    pa.meta = a->meta;
    pa.nmeta = a->nmeta;
    pa.body = mem;
    pa.repair = a->ctx->repair;
    a->mem = mem;
    a->body_len = mem.ptr != NULL ? (int64_t)mem.len : body_len;
    a->sent = 0;
    pool_init(&tmp);
    apply_peer_request(&tmp, a->m, stp, &pa, &rq);
    a->dst.x = sites_start(a->peer, &tmp, &rq, a->body_len, &dst_ops, &a->dst);
    pool_deinit(&tmp);
    progress(a);
    if (a->dst.x == NULL) {
        a->dst.done = 1;
        return -1;
    }
    return 0;
}

/* --- finishing ---------------------------------------------------------------------------- */

static void
apply_free(struct apply *a)
{
    leg_stop(&a->src);
    leg_stop(&a->dst);
    event_free(a->step_ev);
    event_free(a->stall_ev);
    evbuffer_free(a->pipe);
    evbuffer_free(a->src.capture);
    evbuffer_free(a->dst.capture);
    pool_deinit(&a->pool);
    free(a);
}

static void
arm_stall(struct apply *a, int64_t ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(a->stall_ev, &tv);
}

static void
report(struct apply *a, enum apply_outcome o, int status)
{
    struct apply_result res;

    a->state = AS_DONE;
    leg_stop(&a->src);
    leg_stop(&a->dst);
    res.outcome = o;
    res.status = status;
    res.reason = a->reason;
    res.skew_ms = a->skew_ms;
    res.skew_known = a->skew_known;
    res.peer_etag = a->peer_etag;
    a->cb(a->arg, &res);
    apply_free(a);
}

/*
 * Ends the apply with O (REASON printf-style). An upload begun at the peer is aborted
 * first (AS_ABORT), unless the apply was cancelled. A is freed: return right after.
 */
static void finish(struct apply *a, enum apply_outcome o, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
finish(struct apply *a, enum apply_outcome o, int status, const char *fmt, ...)
{
    va_list ap;

    if (a->state == AS_ABORT) {
        report(a, o == APPLY_CANCELLED ? o : a->pend, a->pend_status);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(a->reason, sizeof(a->reason), fmt, ap);
    va_end(ap);
    if (a->upload_id != NULL && o != APPLY_APPLIED && o != APPLY_CANCELLED) {
        leg_stop(&a->src);
        leg_stop(&a->dst);
        a->pend = o;
        a->pend_status = status;
        a->state = AS_ABORT;
        if (start_dst(a, APPLY_STEP_ABORT, -1, SLICE_NULL) == 0) {
            arm_stall(a, a->ctx->transfer_timeout_ms);
            return;
        }
    }
    report(a, o, status);
}

static const char *
xfer_error_text(const char *err)
{
    if (err == upstream_err_connect) {
        return "cannot connect";
    }
    if (err == upstream_err_timeout) {
        return "connect timed out";
    }
    return "connection broke";
}

/* "Code: Message" of a captured S3 error body, or "". */
static const char *
error_text(struct apply *a, struct leg *l)
{
    const char *code = captured_tag(a, l, "Code"), *msg = captured_tag(a, l, "Message");

    if (code[0] == '\0') {
        return "";
    }
    return pool_printf(&a->pool, " %s%s%.120s", code, msg[0] ? ": " : "", msg);
}

/* Milliseconds the entry's stamp is ahead of the peer's Date header; -1 if unknown. */
static int
skew_from_date(const struct apply *a, int64_t *skew)
{
    struct stamp st;
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (stamp_parse(a->m->stamp, &st) != 0 || a->dst.date[0] == '\0' ||
        strptime(a->dst.date, "%a, %d %b %Y %H:%M:%S", &tm) == NULL) {
        return -1;
    }
    *skew = stamp_ms(&st) - (int64_t)timegm(&tm) * 1000;
    return 0;
}

/*
 * The peer answered the request of WHAT (DST is done). Returns 1 for a 2xx (with *STALE),
 * or 0 after finishing the apply with the failure.
 */
static int
peer_ok(struct apply *a, const char *what, int *stale)
{
    struct leg *d = &a->dst;

    if (d->err != NULL && !d->head) {
        finish(a, APPLY_UNAVAILABLE, 0, "%s at peer %s: %s", what, a->peer->id,
               xfer_error_text(d->err));
        return 0;
    }
    if (d->err != NULL) {
        finish(a, APPLY_FAILED, d->status, "%s at peer %s: %s after status %d", what, a->peer->id,
               xfer_error_text(d->err), d->status);
        return 0;
    }
    if (is_2xx(d->status)) {
        *stale = strcmp(d->result, "stale") == 0;
        return 1;
    }
    if (d->status == 503 && strcmp(d->result, "future") == 0) {
        a->skew_known = skew_from_date(a, &a->skew_ms) == 0;
        finish(a, APPLY_FUTURE, d->status,
               "peer %s refused the stamp as too far ahead of its clock (x-s3tee-result: future)",
               a->peer->id);
        return 0;
    }
    finish(a, d->status == 502 || d->status == 503 || d->status == 504 ? APPLY_UNAVAILABLE
                                                                         : APPLY_FAILED,
           d->status, "%s at peer %s: status %d%s", what, a->peer->id, d->status, error_text(a, d));
    return 0;
}

/*
 * The store's response head for the entry (SRC head is in). Returns 1 when it carries the
 * entry's stamp; else finishes (SUPERSEDED, or FAILED) and returns 0. A non-2xx waits
 * for its body (the error code) by returning 0 without finishing while SRC runs.
 */
static int
store_head_ok(struct apply *a, const char *what)
{
    struct leg *s = &a->src;
    struct stamp mine, theirs;

    if (s->status == 404) {
        finish(a, APPLY_SUPERSEDED, 404,
               "%s: the object is no longer in the local store (a later entry deletes it)", what);
        return 0;
    }
    if (!is_2xx(s->status)) {
        if (!s->done) {
            return 0; /* wait for the error body */
        }
        finish(a, APPLY_FAILED, s->status, "%s at the local store: status %d%s", what, s->status,
               error_text(a, s));
        return 0;
    }
    if (s->has_stamp && slice_eq(slice_cstr(s->stamp), a->m->stamp)) {
        return 1;
    }
    if (s->has_stamp && stamp_parse(slice_cstr(s->stamp), &theirs) == 0 &&
        stamp_parse(a->m->stamp, &mine) == 0 && stamp_cmp(&theirs, &mine) > 0) {
        finish(a, APPLY_SUPERSEDED, s->status,
               "%s: the local store holds stamp %s, newer than the entry's", what, s->stamp);
        return 0;
    }
    finish(a, APPLY_FAILED, s->status,
           "%s: the local store holds %s%s, not the entry's stamp (written around the proxy?)",
           what, s->has_stamp ? "stamp " : "an object without a stamp",
           s->has_stamp ? s->stamp : "");
    return 0;
}

/* Resumes whichever side waits for the other. */
static void
pipe_pump(struct apply *a)
{
    if (a->src.paused && a->src.x != NULL && evbuffer_get_length(a->pipe) < PIPE_MAX / 2) {
        a->src.paused = 0;
        upstream_resume_response(a->src.x);
    }
    if (a->dst.paused && a->dst.x != NULL &&
        (evbuffer_get_length(a->pipe) > 0 || a->sent >= a->body_len)) {
        a->dst.paused = 0;
        upstream_resume_body(a->dst.x);
    }
}

/*
 * A streamed copy (PUT or one part): SRC feeds DST. Returns 1 when DST finished with 2xx
 * (*STALE set), 0 while running or after finishing the apply with a failure.
 */
static int
stream_step(struct apply *a, const char *what, int *stale)
{
    struct leg *s = &a->src, *d = &a->dst;

    if (d->done) {
        if (!peer_ok(a, what, stale)) {
            return 0;
        }
        if (!*stale && a->sent != a->body_len) {
            finish(a, APPLY_FAILED, d->status, "%s at peer %s: answered %d before the whole body",
                   what, a->peer->id, d->status);
            return 0;
        }
        leg_stop(s);
        return 1;
    }
    if (s->done && s->x == NULL && s->err != NULL) {
        finish(a, APPLY_FAILED, 0, "%s: reading the local store: %s after %lld of %lld bytes", what,
               xfer_error_text(s->err), (long long)s->received, (long long)a->body_len);
        return 0;
    }
    if (s->done && s->received != a->body_len) {
        finish(a, APPLY_FAILED, 0, "%s: the local store sent %lld of %lld bytes", what,
               (long long)s->received, (long long)a->body_len);
        return 0;
    }
    pipe_pump(a);
    return 0;
}

static void start_part(struct apply *a);

static void
step_store_get(struct apply *a)
{
    struct leg *s = &a->src;

    if (!s->head) {
        if (s->done) {
            finish(a, APPLY_UNAVAILABLE, 0, "GET at the local store: %s", xfer_error_text(s->err));
        }
        return;
    }
    if (!store_head_ok(a, "GET")) {
        return;
    }
    if (s->content_length < 0) {
        finish(a, APPLY_FAILED, s->status, "GET at the local store: no Content-Length");
        return;
    }
    a->state = AS_PUT;
    if (start_dst(a, APPLY_STEP_PUT, s->content_length, SLICE_NULL) != 0) {
        finish(a, APPLY_FAILED, 0, "PUT at peer %s: cannot start the transfer", a->peer->id);
        return;
    }
    pipe_pump(a);
}

static void
step_put(struct apply *a)
{
    int stale = 0;

    if (stream_step(a, "PUT", &stale)) {
        snprintf(a->peer_etag, sizeof(a->peer_etag), "%s", stale ? "" : a->dst.etag);
        finish(a, stale ? APPLY_STALE : APPLY_APPLIED, a->dst.status, "%s", "");
    }
}

static void
step_store_head(struct apply *a)
{
    struct leg *s = &a->src;

    if (!s->done) {
        return; /* HEAD has no body: its end follows its head at once */
    }
    if (!s->head) {
        finish(a, APPLY_UNAVAILABLE, 0, "HEAD at the local store: %s", xfer_error_text(s->err));
        return;
    }
    if (!store_head_ok(a, "HEAD")) {
        return;
    }
    if (s->content_length != a->plan.total) {
        finish(a, APPLY_INVALID, s->status,
               "the entry's parts add up to %lld bytes, the object has %lld",
               (long long)a->plan.total, (long long)s->content_length);
        return;
    }
    a->want_meta = 0;
    a->state = AS_CREATE;
    if (start_dst(a, APPLY_STEP_CREATE, -1, SLICE_NULL) != 0) {
        finish(a, APPLY_FAILED, 0, "CreateMultipartUpload at peer %s: cannot start the transfer",
               a->peer->id);
    }
}

static void
step_create(struct apply *a)
{
    int stale = 0;
    const char *uid;

    if (!a->dst.done || !peer_ok(a, "CreateMultipartUpload", &stale)) {
        return;
    }
    if (stale) {
        finish(a, APPLY_STALE, a->dst.status, "%s", "");
        return;
    }
    uid = captured_tag(a, &a->dst, "UploadId");
    if (uid[0] == '\0') {
        finish(a, APPLY_FAILED, a->dst.status,
               "CreateMultipartUpload at peer %s: no UploadId in the answer", a->peer->id);
        return;
    }
    a->upload_id = (char *)uid;
    xml_unescape(a->upload_id);
    a->etags = pool_alloc(&a->pool, sizeof(char *) * a->plan.nparts);
    a->part = 0;
    a->part_off = 0;
    start_part(a);
}

static void
start_part(struct apply *a)
{
    int64_t size;

    if (a->part == a->plan.nparts) {
        char *xml = apply_complete_xml(&a->pool, a->etags, a->plan.nparts);

        a->state = AS_COMPLETE;
        if (xml == NULL || start_dst(a, APPLY_STEP_COMPLETE, -1, slice_cstr(xml)) != 0) {
            finish(a, APPLY_FAILED, 0, "CompleteMultipartUpload at peer %s: cannot start",
                   a->peer->id);
        }
        return;
    }
    size = a->plan.part_size[a->part];
    if (size == 0) {
        /* an empty part (an empty object uploaded as one part): nothing to read */
        leg_reset(&a->src);
        a->src.done = 1;
        evbuffer_drain(a->pipe, evbuffer_get_length(a->pipe));
        a->state = AS_PART_PUT;
        if (start_dst(a, APPLY_STEP_PART, 0, SLICE_NULL) != 0) {
            finish(a, APPLY_FAILED, 0, "UploadPart at peer %s: cannot start", a->peer->id);
        }
        return;
    }
    a->state = AS_PART_GET;
    if (start_src(a, "GET", a->part_off, size, 0) != 0) {
        finish(a, APPLY_FAILED, 0, "GET part %zu at the local store: cannot start", a->part + 1);
    }
}

static void
step_part_get(struct apply *a)
{
    struct leg *s = &a->src;
    int64_t size = a->plan.part_size[a->part];

    if (!s->head) {
        if (s->done) {
            finish(a, APPLY_FAILED, 0, "GET part %zu at the local store: %s", a->part + 1,
                   xfer_error_text(s->err));
        }
        return;
    }
    if (!store_head_ok(a, "GET part")) {
        return;
    }
    if (s->content_length != size) {
        finish(a, APPLY_FAILED, s->status, "GET part %zu at the local store: %lld bytes, want %lld",
               a->part + 1, (long long)s->content_length, (long long)size);
        return;
    }
    a->state = AS_PART_PUT;
    if (start_dst(a, APPLY_STEP_PART, size, SLICE_NULL) != 0) {
        finish(a, APPLY_FAILED, 0, "UploadPart at peer %s: cannot start", a->peer->id);
        return;
    }
    pipe_pump(a);
}

static void
step_part_put(struct apply *a)
{
    int stale = 0;

    if (!stream_step(a, "UploadPart", &stale)) {
        return;
    }
    if (stale) {
        finish(a, APPLY_STALE, a->dst.status, "%s", "");
        return;
    }
    if (a->dst.etag[0] == '\0') {
        finish(a, APPLY_FAILED, a->dst.status, "UploadPart %zu at peer %s: no ETag", a->part + 1,
               a->peer->id);
        return;
    }
    a->etags[a->part] = pool_strndup(&a->pool, a->dst.etag, strlen(a->dst.etag));
    a->part_off += a->plan.part_size[a->part];
    a->part++;
    start_part(a);
}

static void
step_complete(struct apply *a)
{
    int stale = 0;
    size_t len;
    const char *body;

    if (!a->dst.done || !peer_ok(a, "CompleteMultipartUpload", &stale)) {
        return;
    }
    len = evbuffer_get_length(a->dst.capture);
    body = (const char *)evbuffer_pullup(a->dst.capture, -1);
    if (body != NULL && memmem(body, len, "<Error>", 7) != NULL) {
        /* S3 may answer 200 and put the failure in the body */
        finish(a, APPLY_FAILED, a->dst.status, "CompleteMultipartUpload at peer %s: %s",
               a->peer->id, error_text(a, &a->dst));
        return;
    }
    a->upload_id = NULL; /* completed: nothing to abort */
    if (!stale) {
        snprintf(a->peer_etag, sizeof(a->peer_etag), "%s", captured_tag(a, &a->dst, "ETag"));
        xml_unescape(a->peer_etag);
    }
    finish(a, stale ? APPLY_STALE : APPLY_APPLIED, a->dst.status, "%s", "");
}

static void
step_simple(struct apply *a, const char *what)
{
    int stale = 0;

    if (!a->dst.done) {
        return;
    }
    if (a->state == AS_TAGS && a->dst.err == NULL && a->dst.status == 404) {
        /* no such object at the peer: its PUT may be on the way, or a delete followed here */
        snprintf(a->reason, sizeof(a->reason), "%s at peer %s: status 404%s", what, a->peer->id,
                 error_text(a, &a->dst));
        a->state = AS_TAGS_CHECK;
        if (start_src(a, "HEAD", 0, 0, 0) != 0) {
            report(a, APPLY_FAILED, 404); /* the reason is set; tags have no upload to abort */
        }
        return;
    }
    if (peer_ok(a, what, &stale)) {
        finish(a, stale ? APPLY_STALE : APPLY_APPLIED, a->dst.status, "%s", "");
    }
}

static void
step_tags_check(struct apply *a)
{
    char why[sizeof(a->reason)];

    if (!a->src.done) {
        return;
    }
    memcpy(why, a->reason, sizeof(why));
    if (a->src.head && a->src.status == 404) {
        finish(a, APPLY_SUPERSEDED, 404, "%s; the object is gone here too", why);
        return;
    }
    if (a->src.head && a->src.status == 200) {
        struct stamp data, tag;

        if (!a->src.has_stamp || stamp_parse(slice_cstr(a->src.stamp), &data) != 0 ||
            stamp_parse(a->m->stamp, &tag) != 0) {
            finish(a, APPLY_FAILED, 404, "%s; the object here carries no stamp", why);
            return;
        }
        if (stamp_cmp(&data, &tag) > 0) {
            /* a PUT newer than this tag change replaced the object here: its tags won, and
             * its entry may be behind this one in our stream (waiting would deadlock) */
            finish(a, APPLY_SUPERSEDED, 404, "%s; a newer PUT (%s) replaced the object here", why,
                   a->src.stamp);
            return;
        }
        /* The peer lacks the object this change tagged here: its PUT (whose entry is ahead
         * of ours, or in a third site's stream) is still on its way there, or the peer
         * deleted it and that delete is on its way here. Either ends the wait (applied, or
         * SUPERSEDED above) however long a partition lasts: no dead-letter limit. */
        finish(a, APPLY_UNAVAILABLE, 404, "%s; the object is still here: waiting for it there",
               why);
        return;
    }
    finish(a, APPLY_FAILED, 404, "%s", why);
}

static void
step_start(struct apply *a)
{
    const char *why = NULL;

    if (apply_plan_make(&a->pool, a->m, &a->plan, &why) != 0) {
        finish(a, APPLY_INVALID, 0, "%s", why);
        return;
    }
    switch (a->plan.kind) {
    case APPLY_KIND_PUT:
        a->state = AS_STORE_GET;
        if (start_src(a, "GET", 0, 0, 1) != 0) {
            finish(a, APPLY_FAILED, 0, "GET at the local store: cannot start");
        }
        return;
    case APPLY_KIND_MULTIPART:
        a->state = AS_STORE_HEAD;
        if (start_src(a, "HEAD", 0, 0, 1) != 0) {
            finish(a, APPLY_FAILED, 0, "HEAD at the local store: cannot start");
        }
        return;
    case APPLY_KIND_DELETE:
        a->state = AS_DELETE;
        if (start_dst(a, APPLY_STEP_DELETE, -1, SLICE_NULL) != 0) {
            finish(a, APPLY_FAILED, 0, "DELETE at peer %s: cannot start", a->peer->id);
        }
        return;
    case APPLY_KIND_PUT_TAGS:
        a->state = AS_TAGS;
        if (start_dst(a, APPLY_STEP_PUT_TAGS, -1, slice_cstr(a->plan.tagging_xml)) != 0) {
            finish(a, APPLY_FAILED, 0, "PutObjectTagging at peer %s: cannot start", a->peer->id);
        }
        return;
    }
}

static void
step(struct apply *a)
{
    if (a->cancelled) {
        finish(a, APPLY_CANCELLED, 0, "cancelled");
        return;
    }
    switch (a->state) {
    case AS_START:
        step_start(a);
        return;
    case AS_STORE_GET:
        step_store_get(a);
        return;
    case AS_PUT:
        step_put(a);
        return;
    case AS_STORE_HEAD:
        step_store_head(a);
        return;
    case AS_CREATE:
        step_create(a);
        return;
    case AS_PART_GET:
        step_part_get(a);
        return;
    case AS_PART_PUT:
        step_part_put(a);
        return;
    case AS_COMPLETE:
        step_complete(a);
        return;
    case AS_ABORT:
        if (a->dst.done) {
            report(a, a->pend, a->pend_status);
        }
        return;
    case AS_DELETE:
        step_simple(a, "DELETE");
        return;
    case AS_TAGS:
        step_simple(a, "PutObjectTagging");
        return;
    case AS_TAGS_CHECK:
        step_tags_check(a);
        return;
    case AS_DONE:
        return;
    }
}

static void
on_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    step(arg);
}

static void
on_stall(evutil_socket_t fd, short what, void *arg)
{
    struct apply *a = arg;
    int64_t idle = timeutil_mono_ms() - a->last_progress_ms, left;

    (void)fd;
    (void)what;
    if (idle >= a->ctx->transfer_timeout_ms) {
        if (a->state == AS_ABORT) {
            report(a, a->pend, a->pend_status); /* the abort is best effort */
            return;
        }
        finish(a, APPLY_FAILED, 0, "no progress for %lld ms (transfer_timeout)", (long long)idle);
        return;
    }
    left = a->ctx->transfer_timeout_ms - idle;
    arm_stall(a, left);
}

struct apply *
apply_start(const struct apply_ctx *ctx, struct site *peer, const struct mutation *m, apply_cb cb,
            void *arg)
{
    struct apply *a = xcalloc(1, sizeof(*a));

    a->ctx = ctx;
    a->peer = peer;
    a->m = m;
    a->cb = cb;
    a->arg = arg;
    a->state = AS_START;
    pool_init(&a->pool);
    a->pipe = evbuffer_new();
    a->src.a = a->dst.a = a;
    a->src.capture = evbuffer_new();
    a->dst.capture = evbuffer_new();
    a->src.done = a->dst.done = 1; /* nothing running yet */
    a->body_len = -1;
    a->step_ev = event_new(ctx->evb, -1, 0, on_step, a);
    a->stall_ev = evtimer_new(ctx->evb, on_stall, a);
    progress(a);
    arm_stall(a, ctx->transfer_timeout_ms);
    kick(a);
    return a;
}

void
apply_cancel(struct apply *a)
{
    a->cancelled = 1;
    kick(a);
}
