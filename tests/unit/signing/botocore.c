/*
 * Unit test: our canonical requests and signatures equal botocore's for every request in
 * tests/vectors/sigv4_botocore.txt (written by tests/vectors/gen_vectors.py). Each request
 * goes through the same path as in the proxy: parse the Authorization header or presigned
 * query, derive the key, canonicalise what was received, sign, compare.
 * S3TEE_VECTORS overrides the file's path (default: relative to the repository root).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pool.h"
#include "signing/auth.h"
#include "signing/sigv4.h"
#include "test.h"

#define MAX_HEADERS 32

struct vec {
    char name[128];                           /* "vector" line */
    char *method, *uri, *query, *secret;      /* xstrdup'd fields */
    char *payload, *canonical, *signature;    /* canonical is hex-decoded */
    int presigned;                            /* 1 for S3SigV4QueryAuth vectors */
    struct sigv4_header h[MAX_HEADERS];       /* headers as sent (slices into hstore) */
    char *hstore[MAX_HEADERS][2];             /* owned name/value strings */
    size_t nh;                                /* headers used */
};

static char *
dup(const char *s)
{
    char *d = malloc(strlen(s) + 1);

    strcpy(d, s);
    return d;
}

static char *
unhex(const char *s)
{
    size_t n = strlen(s) / 2, i;
    char *d = malloc(n + 1);

    for (i = 0; i < n; i++) {
        d[i] = (char)(hexval((unsigned char)s[2 * i]) << 4 | hexval((unsigned char)s[2 * i + 1]));
    }
    d[n] = '\0';
    return d;
}

static void
vec_free(struct vec *v)
{
    size_t i;

    free(v->method);
    free(v->uri);
    free(v->query);
    free(v->secret);
    free(v->payload);
    free(v->canonical);
    free(v->signature);
    for (i = 0; i < v->nh; i++) {
        free(v->hstore[i][0]);
        free(v->hstore[i][1]);
    }
    memset(v, 0, sizeof(*v));
}

static struct slice
header(const struct vec *v, const char *name)
{
    size_t i;

    for (i = 0; i < v->nh; i++) {
        if (slice_eq_nocase(v->h[i].name, slice_cstr(name))) {
            return v->h[i].value;
        }
    }
    return SLICE_NULL;
}

static void
check(const struct vec *v)
{
    struct sigv4_request r = {slice_cstr(v->method), slice_cstr(v->uri), slice_cstr(v->query),
                              v->h,                  v->nh,               slice_cstr(v->payload)};
    struct sigv4_auth a;
    struct pool p;
    const char *err = NULL, *creq, *sts;
    uint8_t key[32];
    char sig[65];
    int rc;

    pool_init(&p);
    if (v->presigned) {
        rc = auth_parse_presigned(&p, r.query, &a, &err);
    } else {
        struct slice date = header(v, "x-amz-date");

        rc = auth_parse_header(header(v, "authorization"), date.ptr ? date : header(v, "date"),
                               &a, &err);
    }
    ok(rc == 0, "%s: credentials parse (%s)", v->name, err ? err : "ok");
    if (rc != 0) {
        pool_deinit(&p);
        return;
    }
    creq = sigv4_canonical_request(&p, &r, a.signed_headers, v->presigned, &err);
    ok_str(creq, v->canonical, "%s: canonical request equals botocore's", v->name);
    if (creq == NULL) {
        pool_deinit(&p);
        return;
    }
    sigv4_signing_key(slice_cstr(v->secret), a.date8, a.region, a.service, key);
    sts = sigv4_string_to_sign(&p, a.amz_date, a.scope, creq);
    sigv4_sign(key, sts, sig);
    ok(strcmp(sig, v->signature) == 0 && slice_eq(a.signature, slice_cstr(sig)),
       "%s: signature equals botocore's (%s)", v->name, sig);
    pool_deinit(&p);
}

int
main(void)
{
    const char *path = getenv("S3TEE_VECTORS");
    static char line[1 << 16];
    struct vec v;
    FILE *f;
    int nvec = 0, npresigned = 0;

    memset(&v, 0, sizeof(v));
    f = fopen(path ? path : "tests/vectors/sigv4_botocore.txt", "r");
    ok(f != NULL, "vector file opens (run from the repository root or set S3TEE_VECTORS)");
    if (f == NULL) {
        return done_testing();
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *tab, *val;

        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') {
            continue;
        }
        if (strcmp(line, "end") == 0) {
            check(&v);
            nvec++;
            npresigned += v.presigned;
            vec_free(&v);
            continue;
        }
        tab = strchr(line, '\t');
        if (tab == NULL) {
            ok(0, "malformed vector line '%s'", line);
            continue;
        }
        *tab = '\0';
        val = tab + 1;
        if (strcmp(line, "vector") == 0) {
            snprintf(v.name, sizeof(v.name), "%s", val);
        } else if (strcmp(line, "method") == 0) {
            v.method = dup(val);
        } else if (strcmp(line, "uri") == 0) {
            v.uri = dup(val);
        } else if (strcmp(line, "query") == 0) {
            v.query = dup(val);
        } else if (strcmp(line, "secret") == 0) {
            v.secret = dup(val);
        } else if (strcmp(line, "presigned") == 0) {
            v.presigned = atoi(val);
        } else if (strcmp(line, "payload") == 0) {
            v.payload = dup(val);
        } else if (strcmp(line, "canonical") == 0) {
            v.canonical = unhex(val);
        } else if (strcmp(line, "signature") == 0) {
            v.signature = dup(val);
        } else if (strcmp(line, "header") == 0 && v.nh < MAX_HEADERS) {
            char *t2 = strchr(val, '\t');

            if (t2 == NULL) {
                ok(0, "malformed header line");
                continue;
            }
            *t2 = '\0';
            v.hstore[v.nh][0] = dup(val);
            v.hstore[v.nh][1] = dup(t2 + 1);
            v.h[v.nh].name = slice_cstr(v.hstore[v.nh][0]);
            v.h[v.nh].value = slice_cstr(v.hstore[v.nh][1]);
            v.nh++;
        } else {
            ok(0, "unknown vector key '%s'", line);
        }
    }
    fclose(f);
    ok(nvec >= 29 && npresigned >= 6, "read %d vectors, %d presigned", nvec, npresigned);
    return done_testing();
}
