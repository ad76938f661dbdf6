/*
 * resync.c - anti-entropy for one bucket between this site and one peer.
 *
 *   local store  ListObjectsV2 page --\
 *                                      merge by key --> same ETag+size: in sync
 *   peer proxy   ListObjectsV2 page --/        |
 *                                              v  (differs, or on one side only)
 *                        local: index (HGETALL) + HEAD store   peer: HEAD at its proxy
 *                        (stamps, tombstones)                  (store stamp + its index)
 *                                              |
 *                 highest stamp wins: push (replica write at the peer) | pull (replica
 *                 write here, read from the peer) | in sync | unstamped (--join stamps it)
 *                                              |
 *                 checkpoint every CKPT_EVERY keys: s3tee:resync:<peer>:<bucket>
 *
 * Memory: one listing page per side and one key's state; object bodies stream through
 * replicator/apply.c (bounded pipe), never held whole.
 *
 * Safe at both sites at once: every repair is a replica write carrying the ORIGINAL stamp
 * of the winning write, and a proxy applies a replica write only when its stamp is newer
 * than its index, under the key's lease (else "stale", nothing written). Two runs racing on
 * a key therefore both write the same winner, or one of them is a no-op; neither can make
 * an older stamp visible. The same holds against the replicators running meanwhile.
 *
 * One libevent loop, driven synchronously (run_until): the tool does one thing at a time,
 * which keeps it simple; the cost per key is a few local round trips.
 */
#include "tools/resync.h"

#include <ctype.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "common/log.h"
#include "common/pool.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "queue/stamp.h"
#include "replicator/apply.h"
#include "replicator/conf.h"
#include "replicator/sites.h"
#include "signing/creds.h"
#include "signing/uri.h"

#define PAGE_KEYS "1000"               /* ListObjectsV2 max-keys */
#define PAGE_MAX (32 * 1024 * 1024)    /* a listing page's XML, at most (1000 keys of 1 KiB) */
#define SMALL_MAX (256 * 1024)         /* other response bodies kept (errors, copy result) */
#define CKPT_EVERY 200                 /* keys between two checkpoint writes, at most */
#define CKPT_MS 2000                   /* and milliseconds (slow keys: large objects) */
#define TAGS_MAX 16384                 /* URL-encoded tag set (10 tags of 128+256 chars) */
#define DEFAULT_CONF "/etc/s3tee/replicator.conf"

struct ropts {
    const char *conf_path; /* replicator.conf: site, Redis, store, peers, keys */
    const char *bucket;    /* the bucket */
    const char *peer;      /* the peer site id */
    const char *prefix;    /* only keys with this prefix ("" all) */
    const char *proxy_url; /* this site's proxy (pulls, join); NULL: no pulls */
    int dry_run;           /* report only */
    int join;              /* stamp objects that have none (a site joining with data) */
    double rate;           /* keys per second, 0 = unlimited */
};

struct rs {
    struct ropts o;             /* options */
    struct repl_conf *cf;       /* the configuration (owned) */
    struct event_base *evb;     /* the loop (owned) */
    struct sites *sites;        /* store and peer endpoints (owned) */
    struct site *peer;          /* the peer's proxy, our key there (in sites) */
    struct site local;          /* this site's proxy, the peer's site key here (pulls) */
    int have_local;             /* local is set up */
    struct apply_ctx push_ctx;  /* source: the local store */
    struct apply_ctx pull_ctx;  /* source: the peer's proxy */
    redisContext *rc;           /* this site's Redis (owned) */
    char ckpt[512];             /* checkpoint key */
    long long checked, pushed, pulled, deleted, errors; /* the summary */
    long long total;            /* keys expected (progress), -1 unknown */
    int64_t t0_ms;              /* start (rate, ETA) */
    int64_t last_progress_ms;   /* last progress line */
    int tty;                    /* stderr is a terminal */
};

/* ---- a transfer run to its end ---------------------------------------------------------- */

/* What we keep of one response. */
struct hres {
    struct event_base *evb;              /* to run */
    int done;                            /* on_done came (or the deadline passed) */
    int status;                          /* HTTP status, 0 none */
    const char *err;                     /* transport error, NULL none */
    struct evbuffer *body;               /* response body (owned), up to body_max */
    size_t body_max;                     /* beyond this: overflow */
    int overflow;                        /* the body was longer than body_max */
    char etag[128];                      /* ETag */
    int64_t length;                      /* Content-Length, -1 */
    char meta_stamp[STAMP_TEXT_MAX];     /* x-amz-meta-s3tee-stamp (the store's) */
    char meta_vv[VV_TEXT_MAX];           /* x-amz-meta-s3tee-vv */
    char idx_stamp[STAMP_TEXT_MAX];      /* x-s3tee-stamp (a peer proxy's index) */
    char idx_vv[VV_TEXT_MAX];            /* x-s3tee-vv */
    char idx_tst[STAMP_TEXT_MAX];        /* x-s3tee-tag-stamp */
    char idx_tags[TAGS_MAX];             /* x-s3tee-tags */
    int idx_deleted;                     /* x-s3tee-deleted: 1 */
    struct pool *meta_pool;              /* when set: keep the object headers in meta */
    struct sigv4_header meta[64];        /* object headers apply copies (join's copy) */
    size_t nmeta;                        /* entries in meta */
};

static void
copy_hdr(char *dst, size_t cap, struct slice v)
{
    size_t n = v.len < cap - 1 ? v.len : cap - 1;

    memcpy(dst, v.ptr, n);
    dst[n] = '\0';
}

static void
h_on_header(void *arg, struct slice name, struct slice value)
{
    static const struct {
        const char *name;
        size_t off, cap;
    } keep[] = {
        {"etag", offsetof(struct hres, etag), sizeof(((struct hres *)0)->etag)},
        {"x-amz-meta-s3tee-stamp", offsetof(struct hres, meta_stamp), STAMP_TEXT_MAX},
        {"x-amz-meta-s3tee-vv", offsetof(struct hres, meta_vv), VV_TEXT_MAX},
        {"x-s3tee-stamp", offsetof(struct hres, idx_stamp), STAMP_TEXT_MAX},
        {"x-s3tee-vv", offsetof(struct hres, idx_vv), VV_TEXT_MAX},
        {"x-s3tee-tag-stamp", offsetof(struct hres, idx_tst), STAMP_TEXT_MAX},
        {"x-s3tee-tags", offsetof(struct hres, idx_tags), TAGS_MAX},
    };
    struct hres *h = arg;
    size_t i;
    uint64_t n;

    for (i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        if (slice_eq_nocase(name, slice_cstr(keep[i].name))) {
            copy_hdr((char *)h + keep[i].off, keep[i].cap, value);
            return;
        }
    }
    if (slice_eq_nocase(name, SLICE_LIT("x-s3tee-deleted"))) {
        h->idx_deleted = slice_eq(value, SLICE_LIT("1"));
    } else if (slice_eq_nocase(name, SLICE_LIT("content-length")) &&
               slice_to_u64(value, &n) == 0) {
        h->length = (int64_t)n;
    }
    if (h->meta_pool != NULL && h->nmeta < sizeof(h->meta) / sizeof(h->meta[0]) &&
        value.len > 0) {
        struct slice lname = pool_slice_dup(h->meta_pool, name);

        for (i = 0; i < lname.len; i++) {
            ((char *)lname.ptr)[i] = (char)tolower((unsigned char)lname.ptr[i]);
        }
        if (apply_copied_header(lname)) {
            h->meta[h->nmeta].name = lname;
            h->meta[h->nmeta].value = pool_slice_dup(h->meta_pool, value);
            h->nmeta++;
        }
    }
}

static void
h_on_head(void *arg, int status)
{
    ((struct hres *)arg)->status = status;
}

static int
h_on_body(void *arg, const char *data, size_t len)
{
    struct hres *h = arg;

    if (evbuffer_get_length(h->body) + len > h->body_max) {
        h->overflow = 1;
        return 0; /* dropped; the caller fails the request */
    }
    evbuffer_add(h->body, data, len);
    return 0;
}

static void
h_on_done(void *arg, const char *errstr)
{
    struct hres *h = arg;

    h->err = errstr;
    h->done = 1;
}

static size_t
h_no_body(void *arg, char *buf, size_t max)
{
    (void)arg;
    (void)buf;
    (void)max;
    return 0;
}

static const struct upstream_xfer_ops hres_ops = {
    .read_body = h_no_body,
    .on_header = h_on_header,
    .on_head = h_on_head,
    .on_body = h_on_body,
    .on_done = h_on_done,
};

static void
hres_init(struct hres *h, struct event_base *evb, size_t body_max)
{
    memset(h, 0, sizeof(*h));
    h->evb = evb;
    h->body = evbuffer_new();
    h->body_max = body_max;
    h->length = -1;
}

static void
hres_deinit(struct hres *h)
{
    evbuffer_free(h->body);
    h->body = NULL;
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Runs the loop until *FLAG is set, or TIMEOUT_MS passed (returns -1 then). */
static int
run_until(struct event_base *evb, int *flag, int64_t timeout_ms)
{
    int expired = 0;
    struct event *t = evtimer_new(evb, on_deadline, &expired);
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};

    evtimer_add(t, &tv);
    while (!*flag && !expired) {
        event_base_loop(evb, EVLOOP_ONCE);
    }
    event_free(t);
    return *flag ? 0 : -1;
}

/*
 * One request without a body at S (signed with S's key), run to its end. H gets the
 * response. Returns 0 when an HTTP answer came (any status), -1 on a transport error or
 * timeout (H->err says which).
 */
static int
http_do(struct rs *rs, struct site *s, const char *method, const char *path, const char *query,
        const struct sigv4_header *hdrs, size_t nhdrs, struct hres *h)
{
    struct pool p;
    struct sites_request rq = {method, path, query, hdrs, nhdrs, SIGV4_EMPTY_SHA256};
    struct upstream_xfer *x;

    pool_init(&p);
    x = sites_start(s, &p, &rq, -1, &hres_ops, h);
    pool_deinit(&p);
    if (x == NULL) {
        h->err = "cannot start the request";
        return -1;
    }
    if (run_until(rs->evb, &h->done, rs->cf->transfer_timeout_ms) != 0) {
        upstream_abort(x);
        h->err = "timed out";
        return -1;
    }
    if (h->err != NULL) {
        return -1;
    }
    if (h->overflow) {
        h->err = "response body too large";
        return -1;
    }
    return 0;
}

/* ---- listings ------------------------------------------------------------------------- */

/* Finds <TAG>...</TAG> in [*POS, END): the text between, and *POS moved past it. */
static int
xml_next(const char **pos, const char *end, const char *tag, struct slice *out)
{
    char open[64], close[64];
    const char *a, *b;

    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    a = memmem(*pos, (size_t)(end - *pos), open, strlen(open));
    if (a == NULL) {
        return -1;
    }
    a += strlen(open);
    b = memmem(a, (size_t)(end - a), close, strlen(close));
    if (b == NULL) {
        return -1;
    }
    *out = slice_make(a, (size_t)(b - a));
    *pos = b + strlen(close);
    return 0;
}

/* XML text -> malloc'd string: the five entities and &#N; / &#xN; (as UTF-8). */
static char *
xml_unescape(struct slice s)
{
    char *out = xmalloc(s.len + 1), *o = out;
    size_t i = 0;

    while (i < s.len) {
        const char *semi;
        unsigned long cp;

        if (s.ptr[i] != '&' || (semi = memchr(s.ptr + i, ';', s.len - i)) == NULL) {
            *o++ = s.ptr[i++];
            continue;
        }
        struct slice ent = slice_make(s.ptr + i + 1, (size_t)(semi - s.ptr - i - 1));
        if (slice_eq(ent, SLICE_LIT("amp"))) {
            *o++ = '&';
        } else if (slice_eq(ent, SLICE_LIT("lt"))) {
            *o++ = '<';
        } else if (slice_eq(ent, SLICE_LIT("gt"))) {
            *o++ = '>';
        } else if (slice_eq(ent, SLICE_LIT("quot"))) {
            *o++ = '"';
        } else if (slice_eq(ent, SLICE_LIT("apos"))) {
            *o++ = '\'';
        } else if (ent.len >= 2 && ent.ptr[0] == '#') {
            cp = ent.ptr[1] == 'x' ? strtoul(ent.ptr + 2, NULL, 16) : strtoul(ent.ptr + 1, NULL, 10);
            if (cp < 0x80) {
                *o++ = (char)cp;
            } else if (cp < 0x800) {
                *o++ = (char)(0xc0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                *o++ = (char)(0xe0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *o++ = (char)(0x80 | (cp & 0x3f));
            } else {
                *o++ = (char)(0xf0 | (cp >> 18));
                *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *o++ = (char)(0x80 | (cp & 0x3f));
            }
        } else {
            memcpy(o, s.ptr + i, (size_t)(semi - s.ptr - i) + 1); /* unknown: keep as is */
            o += semi - s.ptr - i + 1;
        }
        i = (size_t)(semi - s.ptr) + 1;
    }
    *o = '\0';
    return out;
}

struct lentry {
    char *key;     /* decoded key (owned) */
    char etag[80]; /* as listed, quotes included */
    int64_t size;  /* bytes */
};

/* One side's listing, a page at a time. */
struct lister {
    struct rs *rs;       /* run (borrowed) */
    struct site *s;      /* where to list */
    const char *what;    /* "local store" / "peer" for messages */
    char *token;         /* continuation token (owned), NULL first / at the end */
    char *after;         /* start-after for the first page (owned), NULL none */
    struct lentry *e;    /* the page (owned) */
    size_t n, i;         /* entries, next one */
    int more;            /* another page follows */
    int started;         /* the first page was asked for */
    int failed;          /* a page could not be read (message printed) */
};

static void
lister_init(struct lister *l, struct rs *rs, struct site *s, const char *what, const char *after)
{
    memset(l, 0, sizeof(*l));
    l->rs = rs;
    l->s = s;
    l->what = what;
    l->after = after != NULL ? xstrdup(after) : NULL;
}

static void
lister_clear_page(struct lister *l)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        free(l->e[i].key);
    }
    free(l->e);
    l->e = NULL;
    l->n = l->i = 0;
}

static void
lister_deinit(struct lister *l)
{
    lister_clear_page(l);
    free(l->token);
    free(l->after);
}

/*
 * Reads one ListObjectsV2 page (XML, LEN bytes, no I/O) into L: its entries (keys and ETags
 * decoded), whether more follow and the continuation token. -1 for a truncated page
 * without a token. Entries without a <Key> are skipped.
 */
static int
lister_parse(struct lister *l, const char *xml, size_t len)
{
    const char *pos = xml, *end = xml + len;
    struct slice v, c;
    size_t cap = 0;

    while (xml_next(&pos, end, "Contents", &c) == 0) {
        const char *cp = c.ptr, *ce = c.ptr + c.len;
        struct lentry *e;
        char *etag, *num;

        if (l->n == cap) {
            cap = cap ? cap * 2 : 256;
            l->e = xrealloc(l->e, cap * sizeof(*l->e));
        }
        e = &l->e[l->n];
        if (xml_next(&cp, ce, "Key", &v) != 0) {
            continue;
        }
        e->key = xml_unescape(v);
        cp = c.ptr;
        e->etag[0] = '\0';
        if (xml_next(&cp, ce, "ETag", &v) == 0) {
            etag = xml_unescape(v);
            snprintf(e->etag, sizeof(e->etag), "%s", etag);
            free(etag);
        }
        cp = c.ptr;
        e->size = -1;
        if (xml_next(&cp, ce, "Size", &v) == 0) {
            num = xstrndup(v.ptr, v.len);
            e->size = strtoll(num, NULL, 10);
            free(num);
        }
        l->n++;
    }
    pos = xml;
    l->more = xml_next(&pos, end, "IsTruncated", &v) == 0 && slice_eq(v, SLICE_LIT("true"));
    free(l->token);
    l->token = NULL;
    pos = xml;
    if (l->more && xml_next(&pos, end, "NextContinuationToken", &v) == 0) {
        l->token = xml_unescape(v);
    } else if (l->more) {
        return -1;
    }
    return 0;
}

/* Reads the next page; 0, or -1 (message printed, l->failed). */
static int
lister_fetch(struct lister *l)
{
    struct rs *rs = l->rs;
    struct pool p;
    struct hres h;
    char *path, *query;
    const char *xml;
    int rc = -1;

    lister_clear_page(l);
    pool_init(&p);
    hres_init(&h, rs->evb, PAGE_MAX);
    path = pool_printf(&p, "/%s", uri_encode_pool(&p, slice_cstr(rs->o.bucket), 0));
    /* parameters in canonical (sorted) order */
    query = pool_printf(&p, "%s%s%slist-type=2&max-keys=" PAGE_KEYS "&prefix=%s%s%s",
                        l->token ? "continuation-token=" : "",
                        l->token ? uri_encode_pool(&p, slice_cstr(l->token), 0) : "",
                        l->token ? "&" : "", uri_encode_pool(&p, slice_cstr(rs->o.prefix), 0),
                        !l->token && l->after ? "&start-after=" : "",
                        !l->token && l->after ? uri_encode_pool(&p, slice_cstr(l->after), 0) : "");
    l->started = 1;
    if (http_do(rs, l->s, "GET", path, query, NULL, 0, &h) != 0 || h.status != 200) {
        fprintf(stderr, "s3tee resync: listing bucket=%s at %s (%s) failed: %s\n", rs->o.bucket,
                l->what, l->s->id, h.err ? h.err : "");
        if (h.err == NULL) {
            fprintf(stderr, "  status %d: %.*s\n", h.status,
                    (int)(evbuffer_get_length(h.body) > 400 ? 400 : evbuffer_get_length(h.body)),
                    (const char *)evbuffer_pullup(h.body, -1));
        }
        goto out;
    }
    /* a page is bounded (PAGE_MAX), so it may be made contiguous */
    xml = (const char *)evbuffer_pullup(h.body, -1);
    if (lister_parse(l, xml, evbuffer_get_length(h.body)) != 0) {
        fprintf(stderr, "s3tee resync: listing at %s is truncated without a continuation "
                        "token\n", l->what);
        goto out;
    }
    rc = 0;
out:
    if (rc != 0) {
        l->failed = 1;
        l->more = 0;
    }
    hres_deinit(&h);
    pool_deinit(&p);
    return rc;
}

/* The next entry, or NULL at the end (or after a failure: see l->failed). */
static struct lentry *
lister_peek(struct lister *l)
{
    while (l->i == l->n) {
        if ((l->started && !l->more) || l->failed) {
            return NULL;
        }
        if (lister_fetch(l) != 0) {
            return NULL;
        }
    }
    return &l->e[l->i];
}

/* ---- one key's state at each side --------------------------------------------------------- */

struct side {
    int exists;                 /* the object is in the store */
    int tomb;                   /* a tombstone, the object absent */
    char stamp[STAMP_TEXT_MAX]; /* the object's (or tombstone's) stamp; "" none */
    char vv[VV_TEXT_MAX];       /* its vector */
    char etag[128];             /* object ETag */
    int64_t size;               /* object size */
    char tst[STAMP_TEXT_MAX];   /* tag register stamp, "" none */
    char tags[TAGS_MAX];        /* tag register (URL-encoded) */
};

static char *
index_key(const char *bucket, const char *key, size_t *len)
{
    size_t bl = strlen(bucket), kl = strlen(key);
    char *k = xmalloc(8 + bl + 1 + kl + 1);

    memcpy(k, "s3tee:o:", 8);
    memcpy(k + 8, bucket, bl);
    k[8 + bl] = '/';
    memcpy(k + 9 + bl, key, kl + 1);
    *len = 8 + bl + 1 + kl;
    return k;
}

/* This site: index entry, and a HEAD at the store when the object is listed. */
static int
local_state(struct rs *rs, const char *key, const struct lentry *listed, struct side *sd)
{
    size_t klen, i;
    char *ik = index_key(rs->o.bucket, key, &klen);
    const char *argv[2] = {"HGETALL", ik};
    size_t argvlen[2] = {7, klen};
    redisReply *r = redisCommandArgv(rs->rc, 2, argv, argvlen);
    char ist[STAMP_TEXT_MAX] = "", ivv[VV_TEXT_MAX] = "";
    int idel = 0;

    free(ik);
    memset(sd, 0, sizeof(*sd));
    sd->size = -1;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        fprintf(stderr, "s3tee resync: reading the index of bucket=%s key=%s: %s\n", rs->o.bucket,
                key, r ? (r->type == REDIS_REPLY_ERROR ? r->str : "bad reply") : rs->rc->errstr);
        if (r) {
            freeReplyObject(r);
        }
        return -1;
    }
    for (i = 0; i + 1 < r->elements; i += 2) {
        const char *f = r->element[i]->str;
        struct slice v = slice_make(r->element[i + 1]->str, (size_t)r->element[i + 1]->len);

        if (strcmp(f, "st") == 0) {
            copy_hdr(ist, sizeof(ist), v);
        } else if (strcmp(f, "vv") == 0) {
            copy_hdr(ivv, sizeof(ivv), v);
        } else if (strcmp(f, "del") == 0) {
            idel = slice_eq(v, SLICE_LIT("1"));
        } else if (strcmp(f, "tst") == 0) {
            copy_hdr(sd->tst, sizeof(sd->tst), v);
        } else if (strcmp(f, "tags") == 0) {
            copy_hdr(sd->tags, sizeof(sd->tags), v);
        }
    }
    freeReplyObject(r);
    if (listed != NULL) {
        struct hres h;
        struct pool p;
        char *path;

        pool_init(&p);
        hres_init(&h, rs->evb, SMALL_MAX);
        path = pool_printf(&p, "/%s/%s", rs->o.bucket, uri_encode_pool(&p, slice_cstr(key), 1));
        if (http_do(rs, &rs->sites->store, "HEAD", path, "", NULL, 0, &h) != 0 ||
            (h.status != 200 && h.status != 404)) {
            fprintf(stderr, "s3tee resync: HEAD bucket=%s key=%s at the local store: %s %d\n",
                    rs->o.bucket, key, h.err ? h.err : "status", h.status);
            hres_deinit(&h);
            pool_deinit(&p);
            return -1;
        }
        if (h.status == 200) {
            sd->exists = 1;
            snprintf(sd->stamp, sizeof(sd->stamp), "%s", h.meta_stamp);
            snprintf(sd->vv, sizeof(sd->vv), "%s", h.meta_vv);
            snprintf(sd->etag, sizeof(sd->etag), "%s", h.etag);
            sd->size = h.length;
        }
        hres_deinit(&h);
        pool_deinit(&p);
        if (sd->exists) {
            return 0;
        }
    }
    if (idel && ist[0] != '\0') {
        sd->tomb = 1;
        snprintf(sd->stamp, sizeof(sd->stamp), "%s", ist);
        snprintf(sd->vv, sizeof(sd->vv), "%s", ivv);
    }
    return 0;
}

/* The peer: a HEAD at its proxy, which adds its index entry (x-s3tee-*) for a site key. */
static int
peer_state(struct rs *rs, const char *key, struct side *sd)
{
    struct hres h;
    struct pool p;
    char *path;
    int rc = 0;

    memset(sd, 0, sizeof(*sd));
    sd->size = -1;
    pool_init(&p);
    hres_init(&h, rs->evb, SMALL_MAX);
    path = pool_printf(&p, "/%s/%s", rs->o.bucket, uri_encode_pool(&p, slice_cstr(key), 1));
    if (http_do(rs, rs->peer, "HEAD", path, "", NULL, 0, &h) != 0 ||
        (h.status != 200 && h.status != 404)) {
        fprintf(stderr, "s3tee resync: HEAD bucket=%s key=%s at peer %s: %s %d\n", rs->o.bucket,
                key, rs->peer->id, h.err ? h.err : "status", h.status);
        rc = -1;
    } else if (h.status == 200) {
        sd->exists = 1;
        snprintf(sd->stamp, sizeof(sd->stamp), "%s", h.meta_stamp);
        snprintf(sd->vv, sizeof(sd->vv), "%s", h.meta_vv);
        snprintf(sd->etag, sizeof(sd->etag), "%s", h.etag);
        sd->size = h.length;
        snprintf(sd->tst, sizeof(sd->tst), "%s", h.idx_tst);
        snprintf(sd->tags, sizeof(sd->tags), "%s", h.idx_tags);
    } else if (h.idx_deleted && h.idx_stamp[0] != '\0') {
        sd->tomb = 1;
        snprintf(sd->stamp, sizeof(sd->stamp), "%s", h.idx_stamp);
        snprintf(sd->vv, sizeof(sd->vv), "%s", h.idx_vv);
    }
    hres_deinit(&h);
    pool_deinit(&p);
    return rc;
}

/* ---- repairs ---------------------------------------------------------------------------- */

struct apply_wait {
    int done;                    /* the callback came */
    enum apply_outcome outcome;  /* its outcome */
    char reason[512];            /* its reason */
};

static void
on_applied(void *arg, const struct apply_result *res)
{
    struct apply_wait *w = arg;

    w->outcome = res->outcome;
    snprintf(w->reason, sizeof(w->reason), "%s", res->reason ? res->reason : "");
    w->done = 1;
}

/*
 * Applies what side S holds for KEY (object or tombstone, with its stamp) at DST, reading
 * the object from CTX's source: a push (local store -> peer) or a pull (peer -> here).
 */
static enum apply_outcome
repair(struct rs *rs, const struct apply_ctx *ctx, struct site *dst, const char *key,
       const struct side *s, char *reason, size_t reasonlen)
{
    struct mutation m;
    struct apply_wait w;
    int tags_too = s->exists && s->tst[0] != '\0' && strcmp(s->tst, s->stamp) > 0;

    memset(&m, 0, sizeof(m));
    memset(&w, 0, sizeof(w));
    m.op = s->exists ? MUT_PUT : MUT_DELETE;
    m.bucket = slice_cstr(rs->o.bucket);
    m.key = slice_cstr(key);
    m.stamp = slice_cstr(s->stamp);
    m.vv = slice_cstr(s->vv);
    m.etag = slice_cstr(s->exists ? s->etag : "");
    m.size = s->exists ? s->size : -1;
    /* a PUT sets data and tags together: the tag register goes with it when it is not newer */
    m.tags = slice_cstr(s->exists && !tags_too ? s->tags : "");
    m.parts = SLICE_LIT("");
    m.time_ms = timeutil_now_ms();
    apply_start(ctx, dst, &m, on_applied, &w);
    /* apply has its own stall timeout; this bound is only a backstop */
    run_until(rs->evb, &w.done, INT32_MAX);
    if (w.outcome == APPLY_APPLIED && tags_too) {
        /* tags changed after the data: their register travels with its own stamp */
        memset(&w, 0, sizeof(w));
        m.op = MUT_TAGS;
        m.stamp = slice_cstr(s->tst);
        m.tags = slice_cstr(s->tags);
        apply_start(ctx, dst, &m, on_applied, &w);
        run_until(rs->evb, &w.done, INT32_MAX);
    }
    snprintf(reason, reasonlen, "%s", w.reason);
    return w.outcome;
}

/* ---- join: stamp an object written around s3tee ------------------------------------------- */

/*
 * Mints a stamp here (the same rule as every local write: max(now << 16, hlc + 1)) for an
 * object that has none, writes it into the object's metadata with a copy onto itself at the
 * store (if the ETag still matches: a client write racing us wins), and records it in the
 * index if the index has no newer stamp. Fills S.
 */
static const char join_mint_lua[] =
    "local h = redis.call('GET', KEYS[1])\n"
    "local ms, c = 0, 0\n"
    "if h and #h == 16 then ms = tonumber(string.sub(h, 1, 12), 16); c = tonumber(string.sub(h, "
    "13, 16), 16) end\n"
    "local now = tonumber(ARGV[1])\n"
    "if now > ms then ms = now; c = 0 else c = c + 1; if c > 65535 then ms = ms + 1; c = 0 end "
    "end\n"
    "local s = string.format('%012x%04x', ms, c)\n"
    "redis.call('SET', KEYS[1], s)\n"
    "return s\n";

static const char join_index_lua[] =
    "local st = redis.call('HGET', KEYS[1], 'st')\n"
    "if st and st >= ARGV[1] then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'st', ARGV[1], 'vv', ARGV[2], 'del', '0', 'etag', ARGV[3], "
    "'size', ARGV[4])\n"
    "return 1\n";

static int
join_stamp(struct rs *rs, const char *key, struct side *s, char *reason, size_t reasonlen)
{
    struct pool p;
    struct hres h;
    redisReply *r;
    char stamp[STAMP_TEXT_MAX], vvtext[VV_TEXT_MAX], now[32], size[32], *path, *src;
    struct sigv4_header hdr[80];
    size_t n = 0, i, klen;
    struct vv vv;
    char *ik;
    int rc = -1;

    pool_init(&p);
    hres_init(&h, rs->evb, SMALL_MAX);
    h.meta_pool = &p;
    path = pool_printf(&p, "/%s/%s", rs->o.bucket, uri_encode_pool(&p, slice_cstr(key), 1));
    if (http_do(rs, &rs->sites->store, "HEAD", path, "", NULL, 0, &h) != 0 || h.status != 200) {
        snprintf(reason, reasonlen, "HEAD at the local store: %s %d", h.err ? h.err : "status",
                 h.status);
        goto out;
    }
    if (h.meta_stamp[0] != '\0') {
        snprintf(reason, reasonlen, "stamped meanwhile");
        goto out;
    }
    snprintf(now, sizeof(now), "%lld", (long long)timeutil_now_ms());
    r = redisCommand(rs->rc, "EVAL %s 1 s3tee:hlc %s", join_mint_lua, now);
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        snprintf(reason, reasonlen, "minting a stamp: %s", r ? (r->str ? r->str : "bad reply")
                                                            : rs->rc->errstr);
        if (r) {
            freeReplyObject(r);
        }
        goto out;
    }
    snprintf(stamp, sizeof(stamp), "%s.%s", r->str, rs->cf->site_id);
    freeReplyObject(r);
    memset(&vv, 0, sizeof(vv));
    vv_bump(&vv, rs->cf->site_id);
    vv_format(&vv, vvtext);
    /* the copy keeps the object's headers; only our metadata is added */
    src = pool_printf(&p, "/%s/%s", rs->o.bucket, uri_encode_pool(&p, slice_cstr(key), 1));
    hdr[n++] = (struct sigv4_header){SLICE_LIT("x-amz-copy-source"), slice_cstr(src)};
    hdr[n++] = (struct sigv4_header){SLICE_LIT("x-amz-copy-source-if-match"), slice_cstr(h.etag)};
    hdr[n++] = (struct sigv4_header){SLICE_LIT("x-amz-metadata-directive"), SLICE_LIT("REPLACE")};
    hdr[n++] = (struct sigv4_header){SLICE_LIT("x-amz-meta-s3tee-stamp"), slice_cstr(stamp)};
    hdr[n++] = (struct sigv4_header){SLICE_LIT("x-amz-meta-s3tee-vv"), slice_cstr(vvtext)};
    for (i = 0; i < h.nmeta && n < sizeof(hdr) / sizeof(hdr[0]); i++) {
        hdr[n++] = h.meta[i];
    }
    {
        struct hres c;

        hres_init(&c, rs->evb, SMALL_MAX);
        if (http_do(rs, &rs->sites->store, "PUT", path, "", hdr, n, &c) != 0 || c.status != 200) {
            snprintf(reason, reasonlen, "copy onto itself at the local store: %s %d",
                     c.err ? c.err : "status", c.status);
            hres_deinit(&c);
            goto out;
        }
        hres_deinit(&c);
    }
    snprintf(size, sizeof(size), "%lld", (long long)h.length);
    ik = index_key(rs->o.bucket, key, &klen);
    {
        const char *argv[8] = {"EVAL", join_index_lua, "1", ik, stamp, vvtext, h.etag, size};
        size_t argvlen[8] = {4, strlen(join_index_lua), 1, klen, strlen(stamp), strlen(vvtext),
                             strlen(h.etag), strlen(size)};

        r = redisCommandArgv(rs->rc, 8, argv, argvlen);
    }
    free(ik);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        snprintf(reason, reasonlen, "indexing the stamp: %s",
                 r ? r->str : rs->rc->errstr);
        if (r) {
            freeReplyObject(r);
        }
        goto out;
    }
    freeReplyObject(r);
    snprintf(s->stamp, sizeof(s->stamp), "%s", stamp);
    snprintf(s->vv, sizeof(s->vv), "%s", vvtext);
    rc = 0;
out:
    hres_deinit(&h);
    pool_deinit(&p);
    return rc;
}

/* ---- one key ------------------------------------------------------------------------------ */

static void
report(struct rs *rs, const char *key, const struct side *l, const struct side *pe,
       const char *action, const char *result, const char *reason)
{
    json_t *o = json_object();
    char *line;

    json_object_set_new(o, "bucket", json_string(rs->o.bucket));
    json_object_set_new(o, "key", json_string(key));
    json_object_set_new(o, "local", l->stamp[0] ? json_string(l->stamp) : json_null());
    json_object_set_new(o, "local_state", json_string(l->exists ? "object" : l->tomb ? "deleted"
                                                                                     : "absent"));
    json_object_set_new(o, "peer", pe->stamp[0] ? json_string(pe->stamp) : json_null());
    json_object_set_new(o, "peer_state", json_string(pe->exists ? "object" : pe->tomb ? "deleted"
                                                                                     : "absent"));
    json_object_set_new(o, "action", json_string(action));
    json_object_set_new(o, "result", json_string(result));
    if (reason != NULL && reason[0] != '\0') {
        json_object_set_new(o, "reason", json_string(reason));
    }
    line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line != NULL) {
        puts(line);
        free(line);
    }
    fflush(stdout);
    json_decref(o);
}

/* Counts an applied repair. */
static void
count(struct rs *rs, int push, const struct side *winner)
{
    if (!winner->exists) {
        rs->deleted++;
    } else if (push) {
        rs->pushed++;
    } else {
        rs->pulled++;
    }
}

/* Compares and repairs KEY; LE / PE are its listing entries (NULL: not listed there). */
static void
handle_key(struct rs *rs, const char *key, const struct lentry *le, const struct lentry *pe)
{
    static struct side l, p; /* large; one key at a time */
    char reason[512] = "";
    const char *action, *result;
    int cmp, push;
    enum apply_outcome out;

    rs->checked++;
    if (le != NULL && pe != NULL && le->size == pe->size && le->etag[0] != '\0' &&
        strcmp(le->etag, pe->etag) == 0) {
        return; /* same bytes at both sites: in sync (stamps are not compared, see notes) */
    }
    if (local_state(rs, key, le, &l) != 0 || peer_state(rs, key, &p) != 0) {
        rs->errors++;
        return;
    }
    if (p.exists && p.stamp[0] == '\0') {
        /* written around s3tee at the peer: only the peer's own --join may stamp it */
        report(rs, key, &l, &p, "none", "unstamped-at-peer",
               "the peer's object has no stamp; run resync --join at the peer");
        rs->errors++;
        return;
    }
    if (l.exists && l.stamp[0] == '\0') {
        if (!rs->o.join) {
            report(rs, key, &l, &p, "none", "unstamped",
                   "the object here has no stamp (written around s3tee); --join stamps it");
            rs->errors++;
            return;
        }
        if (rs->o.dry_run) {
            report(rs, key, &l, &p, "stamp+push", "dry-run", "");
            rs->pushed++; /* what it would do */
            return;
        }
        if (join_stamp(rs, key, &l, reason, sizeof(reason)) != 0) {
            report(rs, key, &l, &p, "stamp", "failed", reason);
            rs->errors++;
            return;
        }
    }
    cmp = strcmp(l.stamp, p.stamp); /* text stamps sort like stamps; "" (none) first */
    if (cmp == 0) {
        return; /* same write at both sites (e.g. a multipart ETag rebuilt differently) */
    }
    push = cmp > 0;
    action = push ? (l.exists ? "push" : "push-delete") : (p.exists ? "pull" : "pull-delete");
    if (rs->o.dry_run) {
        report(rs, key, &l, &p, action, "dry-run", "");
        count(rs, push, push ? &l : &p); /* what it would do */
        return;
    }
    if (!push && !rs->have_local) {
        report(rs, key, &l, &p, action, "failed", "pulls need --proxy (this site's proxy URL)");
        rs->errors++;
        return;
    }
    out = push ? repair(rs, &rs->push_ctx, rs->peer, key, &l, reason, sizeof(reason))
               : repair(rs, &rs->pull_ctx, &rs->local, key, &p, reason, sizeof(reason));
    result = apply_outcome_name(out);
    switch (out) {
    case APPLY_APPLIED:
        count(rs, push, push ? &l : &p);
        break;
    case APPLY_STALE:      /* the receiver moved on meanwhile: nothing to do */
    case APPLY_SUPERSEDED: /* the source moved on meanwhile: the next run sees it */
        break;
    default:
        rs->errors++;
    }
    report(rs, key, &l, &p, action, result, reason);
}

/* ---- checkpoint, rate, progress ------------------------------------------------------------ */

static void
checkpoint_save(struct rs *rs, const char *key)
{
    redisReply *r;

    if (rs->o.dry_run) {
        return;
    }
    r = redisCommand(rs->rc, "HSET %s after %s prefix %s", rs->ckpt, key, rs->o.prefix);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "s3tee resync: cannot save the checkpoint %s: %s\n", rs->ckpt,
                r ? r->str : rs->rc->errstr);
    }
    if (r) {
        freeReplyObject(r);
    }
}

/* The key to resume after, or NULL (malloc'd). */
static char *
checkpoint_load(struct rs *rs)
{
    redisReply *r = redisCommand(rs->rc, "HMGET %s after prefix", rs->ckpt);
    char *after = NULL;

    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
        strcmp(r->element[1]->str, rs->o.prefix) == 0) {
        after = xstrdup(r->element[0]->str);
    }
    if (r) {
        freeReplyObject(r);
    }
    return after;
}

static void
checkpoint_clear(struct rs *rs)
{
    redisReply *r;

    if (rs->o.dry_run) {
        return;
    }
    r = redisCommand(rs->rc, "DEL %s", rs->ckpt);
    if (r) {
        freeReplyObject(r);
    }
}

/* Sleeps so that N keys take at least N / rate seconds. */
static void
pace(struct rs *rs)
{
    int64_t due, now;

    if (rs->o.rate <= 0) {
        return;
    }
    due = rs->t0_ms + (int64_t)((double)rs->checked * 1000.0 / rs->o.rate);
    now = timeutil_mono_us() / 1000;
    if (due > now) {
        struct timespec ts = {(time_t)((due - now) / 1000), (long)((due - now) % 1000) * 1000000};

        nanosleep(&ts, NULL);
    }
}

static void
progress(struct rs *rs, int final)
{
    int64_t now = timeutil_mono_us() / 1000;
    double secs = (double)(now - rs->t0_ms) / 1000.0, rate;

    if (!rs->tty || (!final && now - rs->last_progress_ms < 500)) {
        return;
    }
    rs->last_progress_ms = now;
    rate = secs > 0 ? (double)rs->checked / secs : 0;
    fprintf(stderr, "\rresync %s: checked %lld", rs->o.bucket, rs->checked);
    if (rs->total > 0) {
        long long left = rs->total > rs->checked ? rs->total - rs->checked : 0;
        long eta = rate > 0 ? (long)((double)left / rate) : 0;

        fprintf(stderr, "/%lld (%.0f%%), ETA %ld:%02ld", rs->total,
                100.0 * (double)rs->checked / (double)rs->total, eta / 60, eta % 60);
    }
    fprintf(stderr, ", %.0f keys/s, pushed %lld pulled %lld deleted %lld errors %lld  %s",
            rate, rs->pushed, rs->pulled, rs->deleted, rs->errors, final ? "\n" : "");
}

/* Keys the local listing holds from AFTER on (for the ETA): one listing pass. */
static long long
count_keys(struct rs *rs, const char *after)
{
    struct lister l;
    long long n = 0;

    lister_init(&l, rs, &rs->sites->store, "local store", after);
    while (lister_peek(&l) != NULL) {
        n += (long long)(l.n - l.i);
        l.i = l.n;
    }
    n = l.failed ? -1 : n;
    lister_deinit(&l);
    return n;
}

/* ---- the run ----------------------------------------------------------------------------- */

static int
run(struct rs *rs)
{
    struct lister ll, pl;
    char *after = NULL;
    long long since_ckpt = 0;
    int64_t last_ckpt_ms = timeutil_mono_us() / 1000;

    if (!rs->o.dry_run && (after = checkpoint_load(rs)) != NULL) {
        fprintf(stderr, "s3tee resync: resuming bucket=%s with peer %s after key %s "
                        "(checkpoint %s)\n",
                rs->o.bucket, rs->o.peer, after, rs->ckpt);
    }
    rs->total = rs->tty ? count_keys(rs, after) : -1;
    lister_init(&ll, rs, &rs->sites->store, "local store", after);
    lister_init(&pl, rs, rs->peer, "peer", after);
    free(after);
    rs->t0_ms = timeutil_mono_us() / 1000;
    rs->last_progress_ms = rs->t0_ms; /* the first line once there is a rate to show */
    for (;;) {
        struct lentry *le = lister_peek(&ll), *pe = lister_peek(&pl);
        const char *key;
        int c;

        if (ll.failed || pl.failed) {
            rs->errors++;
            break;
        }
        if (le == NULL && pe == NULL) {
            break;
        }
        c = le == NULL ? 1 : pe == NULL ? -1 : strcmp(le->key, pe->key);
        key = c <= 0 ? le->key : pe->key;
        pace(rs);
        handle_key(rs, key, c <= 0 ? le : NULL, c >= 0 ? pe : NULL);
        if (++since_ckpt >= CKPT_EVERY || timeutil_mono_us() / 1000 - last_ckpt_ms >= CKPT_MS) {
            checkpoint_save(rs, key); /* every key before and this one is handled */
            since_ckpt = 0;
            last_ckpt_ms = timeutil_mono_us() / 1000;
        }
        if (c <= 0) {
            ll.i++;
        }
        if (c >= 0) {
            pl.i++;
        }
        progress(rs, 0);
    }
    if (!ll.failed && !pl.failed) {
        checkpoint_clear(rs); /* a whole pass: the next run starts from the beginning */
    }
    lister_deinit(&ll);
    lister_deinit(&pl);
    progress(rs, 1);
    return 0;
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: s3tee resync --bucket B --peer P [--prefix X] [--dry-run] [--join]\n"
            "                    [--rate N] [--proxy URL] [-c replicator.conf]\n"
            "  Compares this site with peer P for bucket B and repairs every divergent key\n"
            "  towards the highest stamp (push: replica write at P; pull: replica write here,\n"
            "  read from P). One JSON line per divergent key, then\n"
            "  'checked=N pushed=N pulled=N deleted=N errors=N'. Exit 0 when converged.\n"
            "  -c FILE     the replicator's configuration (default " DEFAULT_CONF ");\n"
            "              pulls also need P's site key here ('site P AK SECRET' in its\n"
            "              credentials file, as in the proxy's)\n"
            "  --proxy URL this site's s3tee proxy (needed for pulls and --join)\n"
            "  --dry-run   report only\n"
            "  --join      also stamp objects written around s3tee (a site joining with data)\n"
            "  --rate N    at most N keys per second\n"
            "  The run is checkpointed in this site's Redis (s3tee:resync:P:B) and resumes\n"
            "  after the last checkpointed key when restarted.\n");
}

static int
setup(struct rs *rs)
{
    char err[512];
    const struct creds_entry *sk;

    rs->cf = repl_conf_load(rs->o.conf_path, err, sizeof(err));
    if (rs->cf == NULL) {
        fprintf(stderr, "s3tee resync: %s\n", err);
        return -1;
    }
    rs->evb = event_base_new();
    rs->sites = sites_create(rs->evb, rs->cf, 4);
    rs->peer = sites_peer(rs->sites, rs->o.peer);
    if (rs->peer == NULL) {
        fprintf(stderr, "s3tee resync: peer '%s' is not in %s\n", rs->o.peer, rs->o.conf_path);
        return -1;
    }
    rs->push_ctx = (struct apply_ctx){rs->evb, &rs->sites->store, rs->cf->transfer_timeout_ms, 0};
    rs->pull_ctx = (struct apply_ctx){rs->evb, rs->peer, rs->cf->transfer_timeout_ms, 0};
    if (rs->o.proxy_url != NULL) {
        struct upstream_opts uo;
        const char *host = strstr(rs->o.proxy_url, "://");

        sk = creds_find_site(rs->cf->creds, slice_cstr(rs->o.peer));
        if (sk == NULL || host == NULL) {
            fprintf(stderr, "s3tee resync: pulls need peer %s's site key here ('site %s ...' "
                            "in the credentials file) and --proxy http[s]://HOST:PORT\n",
                    rs->o.peer, rs->o.peer);
            return -1;
        }
        memset(&uo, 0, sizeof(uo));
        uo.base_url = rs->o.proxy_url;
        uo.tls_verify = rs->cf->peer_tls_verify;
        uo.ca_file = rs->cf->peer_ca_file;
        uo.connect_timeout_ms = 10000;
        uo.max_connections = 4;
        rs->local.id = "local proxy";
        rs->local.url = rs->o.proxy_url;
        rs->local.host = host + 3;
        rs->local.access_key = sk->access_key;
        rs->local.secret = sk->secret;
        rs->local.region = rs->cf->region;
        rs->local.keys = &rs->sites->keys;
        rs->local.up = upstream_create(rs->evb, &uo);
        rs->have_local = 1;
    }
    rs->rc = redisConnect(rs->cf->redis_host, rs->cf->redis_port);
    if (rs->rc == NULL || rs->rc->err) {
        fprintf(stderr, "s3tee resync: cannot reach Redis at %s:%d: %s\n", rs->cf->redis_host,
                rs->cf->redis_port, rs->rc ? rs->rc->errstr : "out of memory");
        return -1;
    }
    snprintf(rs->ckpt, sizeof(rs->ckpt), "s3tee:resync:%s:%s", rs->o.peer, rs->o.bucket);
    return 0;
}

static void
teardown(struct rs *rs)
{
    if (rs->have_local) {
        upstream_destroy(rs->local.up);
    }
    sites_destroy(rs->sites);
    if (rs->evb) {
        event_base_free(rs->evb);
    }
    if (rs->rc) {
        redisFree(rs->rc);
    }
    repl_conf_free(rs->cf);
}

int
resync_main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"bucket", required_argument, NULL, 'b'},
                                             {"peer", required_argument, NULL, 'p'},
                                             {"prefix", required_argument, NULL, 'x'},
                                             {"proxy", required_argument, NULL, 'P'},
                                             {"rate", required_argument, NULL, 'r'},
                                             {"dry-run", no_argument, NULL, 'n'},
                                             {"join", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    struct rs rs;
    int c, code;

    memset(&rs, 0, sizeof(rs));
    rs.o.conf_path = DEFAULT_CONF;
    rs.o.prefix = "";
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            rs.o.conf_path = optarg;
            break;
        case 'b':
            rs.o.bucket = optarg;
            break;
        case 'p':
            rs.o.peer = optarg;
            break;
        case 'x':
            rs.o.prefix = optarg;
            break;
        case 'P':
            rs.o.proxy_url = optarg;
            break;
        case 'r':
            rs.o.rate = atof(optarg);
            if (!(rs.o.rate > 0)) {
                fprintf(stderr, "s3tee resync: --rate: expected a positive number, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'n':
            rs.o.dry_run = 1;
            break;
        case 'j':
            rs.o.join = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (rs.o.bucket == NULL || rs.o.peer == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    log_set_level(LOG_WARN);
    rs.tty = isatty(2);
    if (setup(&rs) != 0) {
        rs.errors++; /* the summary line comes in every case */
    } else {
        run(&rs);
    }
    printf("checked=%lld pushed=%lld pulled=%lld deleted=%lld errors=%lld\n", rs.checked,
           rs.pushed, rs.pulled, rs.deleted, rs.errors);
    /* a dry run that found work to do has not converged either */
    code = rs.errors > 0 || (rs.o.dry_run && rs.pushed + rs.pulled + rs.deleted > 0) ? 1 : 0;
    teardown(&rs);
    return code;
}
