/* upsign - SigV4 for the proxy's own outgoing requests (see upsign.h). */
#include "proxy/upsign.h"

#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"

static int
cmp_header_name(const void *a, const void *b)
{
    const struct sigv4_header *x = a, *y = b;

    return slice_cmp(x->name, y->name);
}

const char **
upsign_lines(struct pool *p, struct sigv4_key_cache *keys, const struct upsign_target *t,
             struct slice method, const char *path, const char *query, struct sigv4_header *sh,
             size_t n, const char *payload, const char **errstr)
{
    const char *hostport = strstr(t->base_url, "://");
    struct sigv4_request sr;
    const char **lines;
    char amz_date[TIMEUTIL_AMZ_LEN], date8[9], sig[65];
    char *signed_list, *creq, *sts, *scope;
    const uint8_t *key;
    size_t i, sl;

    hostport = hostport ? hostport + 3 : t->base_url;
    timeutil_amz_date((time_t)(timeutil_now_ms() / 1000), amz_date);
    memcpy(date8, amz_date, 8);
    date8[8] = '\0';
    sh[n++] = (struct sigv4_header){SLICE_LIT("host"), slice_make(hostport, strcspn(hostport, "/"))};
    sh[n++] = (struct sigv4_header){SLICE_LIT("x-amz-date"),
                                    slice_cstr(pool_strndup(p, amz_date, 16))};
    sh[n++] = (struct sigv4_header){SLICE_LIT("x-amz-content-sha256"), slice_cstr(payload)};
    /* the lines go out in this order too, so a repeated name's values are signed in the
     * order the server reads them */
    qsort(sh, n, sizeof(*sh), cmp_header_name);
    sl = 0;
    for (i = 0; i < n; i++) {
        sl += sh[i].name.len + 1;
    }
    signed_list = pool_alloc(p, sl + 1);
    sl = 0;
    for (i = 0; i < n; i++) {
        if (i > 0 && slice_eq(sh[i].name, sh[i - 1].name)) {
            continue;
        }
        if (sl) {
            signed_list[sl++] = ';';
        }
        memcpy(signed_list + sl, sh[i].name.ptr, sh[i].name.len);
        sl += sh[i].name.len;
    }
    signed_list[sl] = '\0';
    sr.method = method;
    sr.canonical_uri = slice_cstr(path);
    sr.query = slice_cstr(query);
    sr.headers = sh;
    sr.nheaders = n;
    sr.payload_hash = slice_cstr(payload);
    creq = sigv4_canonical_request(p, &sr, slice_make(signed_list, sl), 0, errstr);
    if (creq == NULL) {
        return NULL;
    }
    {
        struct slice parts[] = {slice_make(date8, 8), SLICE_LIT("/"), slice_cstr(t->region),
                                SLICE_LIT("/s3/aws4_request")};

        scope = pool_join(p, parts, sizeof(parts) / sizeof(parts[0]));
    }
    sts = sigv4_string_to_sign(p, slice_make(amz_date, 16), slice_cstr(scope), creq);
    key = sigv4_key_cache_get(keys, slice_cstr(t->access_key), slice_cstr(t->secret),
                              slice_make(date8, 8), slice_cstr(t->region), SLICE_LIT("s3"));
    sigv4_sign(key, sts, sig);
    lines = pool_alloc(p, sizeof(*lines) * (n + 2));
    for (i = 0; i < n; i++) {
        struct slice parts[3] = {sh[i].name, SLICE_LIT(": "), sh[i].value};

        lines[i] = pool_join(p, parts, 3);
    }
    {
        struct slice parts[] = {SLICE_LIT("Authorization: AWS4-HMAC-SHA256 Credential="),
                                slice_cstr(t->access_key), SLICE_LIT("/"), slice_cstr(scope),
                                SLICE_LIT(", SignedHeaders="), slice_make(signed_list, sl),
                                SLICE_LIT(", Signature="), slice_make(sig, 64)};

        lines[n] = pool_join(p, parts, sizeof(parts) / sizeof(parts[0]));
    }
    lines[n + 1] = NULL;
    return lines;
}
