/*
 * upsign - SigV4 signing of the requests the proxy itself sends: to the local store (with the
 * store key) and to peer sites' proxies (with this site's key there).
 *
 *   struct upsign_target t = {base_url, access_key, secret, region};
 *   lines = upsign_lines(pool, keys, &t, SLICE_LIT("PUT"), "/b/k", "", sh, n, payload, &err);
 *
 * SH holds the N headers to send (lowercase names) and must have room for three more: host,
 * x-amz-date and x-amz-content-sha256 are added. The result is "Name: value" lines with an
 * Authorization line last, NULL-terminated, all in POOL; NULL (ERRSTR set) when the request
 * cannot be put in canonical form.
 */
#ifndef S3TEE_PROXY_UPSIGN_H
#define S3TEE_PROXY_UPSIGN_H

#include <stddef.h>

#include "common/pool.h"
#include "common/slice.h"
#include "signing/sigv4.h"

struct upsign_target {
    const char *base_url;   /* "http://host:port"; the host header comes from it */
    const char *access_key; /* key to sign with (borrowed) */
    const char *secret;     /* its secret (borrowed; only passed to the key cache) */
    const char *region;     /* region in the credential scope */
};

const char **upsign_lines(struct pool *p, struct sigv4_key_cache *keys,
                          const struct upsign_target *t, struct slice method, const char *path,
                          const char *query, struct sigv4_header *sh, size_t n,
                          const char *payload, const char **errstr);

#endif
