/*
 * peerop - one small request sent to several peer sites' proxies at once, each signed with
 * this site's key at that peer (the "peer SITE AK SK" lines of the credentials file).
 *
 * Bucket-level operations (CreateBucket, DeleteBucket, versioning and object lock) change
 * the rules for every key, so they run at every site before the client gets its answer
 * (../shared/DESIGN.md, "Bucket-level operations"); peerop is how the proxy reaches the
 * other sites for them. A peer proxy serves these requests as a plain pass-through, because
 * they come with a site key and no stamp: nothing is fanned out again, so there are no loops.
 *
 *   struct peerop_args a = {.method = "PUT", .path = "/photos", .query = "", ...};
 *   op = peerop_start(evb, &w->keys, cf, sites, nsites, &a, on_done, r);
 *   ...
 *   on_done(r, results, nsites)   exactly once: every peer answered, or the deadline passed
 *
 * Everything in the arguments is copied. The conf must outlive the operation (the caller
 * holds a reference). Each call opens its own connections: bucket operations are rare, and
 * this keeps workers free of per-peer state that a reload would have to rebuild.
 */
#ifndef S3TEE_PROXY_PEEROP_H
#define S3TEE_PROXY_PEEROP_H

#include <stddef.h>
#include <stdint.h>

#include "common/slice.h"
#include "proxy/conf.h"
#include "signing/sigv4.h"

struct event_base;
struct peerop;

struct peerop_result {
    const char *site;    /* site id (borrowed from the conf) */
    int status;          /* HTTP status of the peer's answer; 0 when there was none */
    const char *errstr;  /* why there was no answer (static text), else NULL */
    char code[48];       /* S3 error code of an error body, else "" */
    long key_count;      /* <KeyCount> of a ListObjectsV2 answer, -1 when absent */
};

typedef void (*peerop_done_fn)(void *arg, const struct peerop_result *res, size_t n);

struct peerop_args {
    const char *method;                 /* "PUT" */
    const char *path;                   /* encoded, "/bucket" */
    const char *query;                  /* encoded canonical query, "" for none */
    const struct sigv4_header *headers; /* extra headers to send and sign (lowercase names) */
    size_t nheaders;
    struct slice body;                  /* small request body (copied); empty for none */
    int64_t timeout_ms;                 /* for the whole operation */
};

/*
 * Starts A at every site in SITES (ids of this deployment other than this site). Returns
 * NULL with a message in ERR (naming the site) when a request cannot be built, e.g. no
 * peer key for a site; DONE is then never called.
 */
struct peerop *peerop_start(struct event_base *evb, struct sigv4_key_cache *keys,
                            const struct proxy_conf *cf, char *const *sites, size_t nsites,
                            const struct peerop_args *a, peerop_done_fn done, void *arg,
                            char *err, size_t errlen);
/* Stops OP: connections closed, no callback after this returns. */
void peerop_cancel(struct peerop *op);

#endif
