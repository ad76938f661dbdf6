/*
 * creds.h - the credential list: access key -> secret, loaded from a file beside the config.
 *
 * File format, one entry per line; '#' at the start of a line or after whitespace starts a
 * comment; words are separated by spaces or tabs and may be double-quoted (common/conf.h):
 *
 *   # kind  access_key   secret      buckets (client only: * or comma list)
 *   client  AKIDSITE1    secret1     *
 *   client  AKREADONLY   secret2     photos,logs
 *   store   AKIDCEPH     secretceph
 *   site    dc2          AKIDDC2     secretdc2
 *   peer    dc2          AKIDTODC2   secrettodc2
 *
 *   client  a key clients sign with, and the buckets it may use
 *   store   exactly one: the key the proxy re-signs with for the local store
 *   site    a key peer site SITE_ID signs its replica writes with, here
 *   peer    the key this site signs with at peer SITE_ID (that site's "site" line for us)
 *
 * Secrets are kept in memory that core dumps leave out (signing/secmem.h), never on the heap.
 * Access keys are unique across all kinds. A site may have two 'site' keys at once (its key
 * rotating: README "Rotating a site key"), but only one 'peer' key. The file must not be
 * readable or writable by group or others. Secrets never appear in error messages, and are wiped from memory when freed.
 */
#ifndef S3TEE_CREDS_H
#define S3TEE_CREDS_H

#include <stddef.h>

#include "common/slice.h"

enum creds_kind {
    CREDS_CLIENT = 0, /* "client ACCESS_KEY SECRET BUCKETS" */
    CREDS_STORE,      /* "store ACCESS_KEY SECRET" */
    CREDS_SITE,       /* "site SITE_ID ACCESS_KEY SECRET" */
    CREDS_PEER,       /* "peer SITE_ID ACCESS_KEY SECRET" */
};

struct creds_entry {
    char *access_key;     /* AWS-style access key id (owned) */
    char *secret;         /* secret access key (in the list's secmem vault; wiped on destroy) */
    char **buckets;       /* client: buckets this key may use, unless all_buckets (owned) */
    size_t nbuckets;
    int all_buckets;      /* client "*"; always 1 for store and site keys */
    char *site;           /* site: the peer's site id (owned); NULL for other kinds */
    enum creds_kind kind; /* which kind of line this came from */
    int line;             /* line in the file, for messages */
};

struct creds;

/*
 * creds_load - read and check PATH.
 * Returns a list (free with creds_destroy), or NULL with a message in ERR such as
 *   "creds.txt:4: expected 'client ACCESS_KEY SECRET BUCKETS'"
 *   "creds.txt:9: duplicate access key (first defined at line 3)"
 *   "creds.txt: no 'store' line"
 *   "creds.txt: permissions 0644 are too open; run chmod 600 creds.txt"
 */
struct creds *creds_load(const char *path, char *err, size_t errlen);
/* Wipes every secret (the vault: secmem_free) and frees C. NULL is a no-op. */
void creds_destroy(struct creds *c);

/* Lookups: the entry (valid until creds_destroy) or NULL. */
/* A client key with this access key id (store and site keys are not returned). */
const struct creds_entry *creds_find_client(const struct creds *c, struct slice access_key);
/* The one store key. */
const struct creds_entry *creds_store(const struct creds *c);
/* A site key with this access key id. */
const struct creds_entry *creds_find_site_key(const struct creds *c, struct slice access_key);
/* The first site key (in file order) for SITE_ID. */
const struct creds_entry *creds_find_site(const struct creds *c, struct slice site_id);
/* The key to sign with at peer SITE_ID, or NULL. */
const struct creds_entry *creds_find_peer(const struct creds *c, struct slice site_id);
/* Number of entries of every kind. */
size_t creds_count(const struct creds *c);

/* 1 if E may use BUCKET ("*" or listed), else 0. */
int creds_bucket_allowed(const struct creds_entry *e, struct slice bucket);

#endif
