/*
 * creds.c - the credential list: parse the file, check it, look keys up by access key id.
 *
 * Secrets never touch the heap: the file is read into a secmem mapping (left out of core
 * dumps, wiped when done), and each secret is copied into the list's vault, one more
 * secmem mapping that creds_destroy() wipes and unmaps (a reload frees the old list).
 */
#include "creds.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/xalloc.h"
#include "signing/secmem.h"

#define CREDS_MAX_FILE (16 * 1024 * 1024) /* far beyond any real key list */
#define CREDS_MAX_WORDS 8                 /* more than any kind takes */

struct creds {
    struct creds_entry *entries;     /* sorted by access_key (owned) */
    size_t n;
    const struct creds_entry *store; /* the one store entry (points into entries) */
    char *vault;                     /* every secret, NUL-terminated (secmem, owned) */
    size_t vault_size;               /* bytes mapped for the vault (secmem_free) */
    size_t vault_used;               /* bytes of it taken */
};

/*
 * One line kind: where its words go. Adding a kind is one row here plus an enum value.
 * Word 0 is the kind itself; -1 means the kind has no such word.
 */
static const struct creds_kind_desc {
    const char *name;     /* first word of the line */
    enum creds_kind kind;
    int nwords;           /* words on the line, kind included */
    int key_at;           /* access key */
    int secret_at;        /* secret */
    int buckets_at;       /* "*" or comma list */
    int site_at;          /* site id */
    const char *usage;    /* for "expected '...'" */
} kinds[] = {
    {"client", CREDS_CLIENT, 4, 1, 2, 3, -1, "client ACCESS_KEY SECRET BUCKETS"},
    {"store", CREDS_STORE, 3, 1, 2, -1, -1, "store ACCESS_KEY SECRET"},
    {"site", CREDS_SITE, 4, 2, 3, -1, 1, "site SITE_ID ACCESS_KEY SECRET"},
    {"peer", CREDS_PEER, 4, 2, 3, -1, 1, "peer SITE_ID ACCESS_KEY SECRET"},
};

static int
fail(char *err, size_t errlen, const char *path, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Writes "PATH:LINE: message" (or "PATH: message" for LINE 0); returns -1. */
static int
fail(char *err, size_t errlen, const char *path, int line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (errlen == 0) {
        return -1;
    }
    if (line > 0) {
        n = snprintf(err, errlen, "%s:%d: ", path, line);
    } else {
        n = snprintf(err, errlen, "%s: ", path);
    }
    if (n >= 0 && (size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void
entry_free(struct creds_entry *e)
{
    size_t i;

    e->secret = NULL; /* in the vault: wiped with it */
    xfree(&e->access_key);
    xfree(&e->site);
    for (i = 0; i < e->nbuckets; i++) {
        xfree(&e->buckets[i]);
    }
    xfree(&e->buckets);
    e->nbuckets = 0;
}

static void
entries_free(struct creds_entry *v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        entry_free(&v[i]);
    }
    free(v);
}

void
creds_destroy(struct creds *c)
{
    if (c == NULL) {
        return;
    }
    entries_free(c->entries, c->n);
    secmem_free(c->vault, c->vault_size);
    free(c);
}

/* A copy of S in C's vault, or NULL if the vault is full (it is sized to the file, which
 * holds every secret with at least one byte after it, so that would be a bug). */
static char *
vault_strdup(struct creds *c, const char *s)
{
    size_t len = strlen(s) + 1;
    char *out;

    if (len > c->vault_size - c->vault_used) {
        return NULL;
    }
    out = c->vault + c->vault_used;
    memcpy(out, s, len);
    c->vault_used += len;
    return out;
}

/* Access keys travel in "Credential=AKID/date/...": printable ASCII without separators. */
static int
valid_access_key(const char *s)
{
    if (*s == '\0') {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if (*s <= ' ' || *s > '~' || *s == '/' || *s == ',' || *s == '=' || *s == '"') {
            return 0;
        }
    }
    return 1;
}

/* Bucket names and site ids: letters, digits, '.', '_', '-'. */
static int
valid_name(const char *s, size_t len)
{
    size_t i;

    if (len == 0) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        char ch = s[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-')) {
            return 0;
        }
    }
    return 1;
}

/* Fills E's bucket list from "*" or "a,b,c"; returns 0 or -1. */
static int
parse_buckets(struct creds_entry *e, const char *list)
{
    const char *p = list, *comma;
    size_t len;

    if (strcmp(list, "*") == 0) {
        e->all_buckets = 1;
        return 0;
    }
    for (;;) {
        comma = strchr(p, ',');
        len = comma ? (size_t)(comma - p) : strlen(p);
        if (!valid_name(p, len)) {
            return -1;
        }
        e->buckets = xrealloc(e->buckets, (e->nbuckets + 1) * sizeof(e->buckets[0]));
        e->buckets[e->nbuckets++] = xstrndup(p, len);
        if (comma == NULL) {
            return 0;
        }
        p = comma + 1;
    }
}

/* Parses one non-blank line's words into E (its secret into C's vault); returns 0 or -1
 * with ERR set. */
static int
parse_entry(struct creds *c, struct creds_entry *e, char **w, int n, const char *path, int line,
            char *err, size_t errlen)
{
    const struct creds_kind_desc *k = NULL;
    size_t i;

    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(w[0], kinds[i].name) == 0) {
            k = &kinds[i];
        }
    }
    if (k == NULL) {
        return fail(err, errlen, path, line, "expected a line starting with client, store or site");
    }
    if (n != k->nwords) {
        return fail(err, errlen, path, line, "expected '%s'", k->usage);
    }
    e->kind = k->kind;
    e->line = line;
    if (!valid_access_key(w[k->key_at])) {
        return fail(err, errlen, path, line,
                    "expected an ACCESS_KEY without '/', ',', '=' or quotes in '%s'",
                    k->usage);
    }
    if (w[k->secret_at][0] == '\0') {
        return fail(err, errlen, path, line, "empty secret in '%s'", k->usage);
    }
    e->access_key = xstrdup(w[k->key_at]);
    e->secret = vault_strdup(c, w[k->secret_at]);
    if (e->secret == NULL) {
        return fail(err, errlen, path, line, "no room left for the secret (a bug)");
    }
    if (k->site_at >= 0) {
        if (!valid_name(w[k->site_at], strlen(w[k->site_at]))) {
            return fail(err, errlen, path, line,
                        "expected a SITE_ID of letters, digits, '.', '_' or '-' in '%s'", k->usage);
        }
        e->site = xstrdup(w[k->site_at]);
    }
    if (k->buckets_at >= 0) {
        if (parse_buckets(e, w[k->buckets_at]) != 0) {
            return fail(err, errlen, path, line,
                        "expected BUCKETS to be * or bucket names separated by commas in '%s'",
                        k->usage);
        }
    } else {
        e->all_buckets = 1;
    }
    return 0;
}

static int
entry_cmp(const void *a, const void *b)
{
    const struct creds_entry *x = a, *y = b;
    int c = strcmp(x->access_key, y->access_key);

    return c != 0 ? c : (x->line > y->line) - (x->line < y->line);
}

/*
 * Reads the whole of FD into a secmem buffer of *OUTCAP bytes with at least one spare byte
 * after the data (outgrown buffers are wiped and unmapped, so no stray copy of a secret is
 * left). Free with secmem_free(*OUT, *OUTCAP). Returns 0 or an errno value.
 */
static int
read_all(int fd, char **out, size_t *outlen, size_t *outcap)
{
    size_t len = 0, cap = 4096;
    char *buf = secmem_alloc(cap);
    ssize_t n;

    if (buf == NULL) {
        return errno;
    }
    for (;;) {
        if (len == cap) {
            char *bigger;

            if (cap >= CREDS_MAX_FILE) {
                secmem_free(buf, cap);
                return EFBIG;
            }
            bigger = secmem_alloc(cap * 2);
            if (bigger == NULL) {
                int e = errno;

                secmem_free(buf, cap);
                return e;
            }
            memcpy(bigger, buf, len);
            secmem_free(buf, cap);
            buf = bigger;
            cap *= 2;
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = errno;

            secmem_free(buf, cap);
            return e;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    *out = buf;
    *outlen = len;
    *outcap = cap;
    return 0;
}

/* Parses BUF into C's entries; returns 0 or -1 with ERR set. BUF is modified. */
static int
parse_all(struct creds *c, char *buf, size_t len, const char *path, char *err, size_t errlen)
{
    char *p = buf, *end = buf + len, *nl, *w[CREDS_MAX_WORDS];
    const char *why = NULL;
    size_t cap = 0, ll;
    int line = 0, n, store_line = 0;

    while (p < end) {
        line++;
        nl = memchr(p, '\n', (size_t)(end - p));
        ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (memchr(p, '\0', ll) != NULL) {
            return fail(err, errlen, path, line, "line contains a NUL byte");
        }
        p[ll] = '\0'; /* the '\n', or one past the data: buf has room (see creds_load) */
        if (ll > 0 && p[ll - 1] == '\r') {
            p[ll - 1] = '\0';
        }
        n = conf_split(p, w, CREDS_MAX_WORDS, &why);
        p = nl ? nl + 1 : end;
        if (n == 0) {
            continue;
        }
        if (n < 0 && strcmp(why, "too many words") != 0) {
            return fail(err, errlen, path, line, "%s", why);
        }
        if (c->n == cap) {
            cap = cap ? cap * 2 : 16;
            c->entries = xrealloc(c->entries, cap * sizeof(c->entries[0]));
        }
        memset(&c->entries[c->n], 0, sizeof(c->entries[0]));
        c->n++;
        if (parse_entry(c, &c->entries[c->n - 1], w, n < 0 ? CREDS_MAX_WORDS + 1 : n, path,
                        line, err, errlen) != 0) {
            return -1;
        }
        if (c->entries[c->n - 1].kind == CREDS_STORE) {
            if (store_line != 0) {
                return fail(err, errlen, path, line,
                            "a second 'store' line (the first is at line %d)", store_line);
            }
            store_line = line;
        }
    }
    if (store_line == 0) {
        return fail(err, errlen, path, 0, "no 'store' line");
    }
    return 0;
}

/*
 * One 'peer' line per site: with two, the key we sign with there would depend on the
 * order of access keys. (Two 'site' lines for one site are fine: that is how a peer's key
 * rotates, both valid for a while.)
 */
static int
check_peers(const struct creds *c, const char *path, char *err, size_t errlen)
{
    const struct creds_entry **peers = NULL, *first = NULL, *second = NULL;
    size_t i, j, n = 0;

    for (i = 0; i < c->n; i++) {
        if (c->entries[i].kind == CREDS_PEER) {
            peers = xrealloc(peers, (n + 1) * sizeof(*peers));
            peers[n++] = &c->entries[i];
        }
    }
    for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) {
            if (peers[i]->line < peers[j]->line && strcmp(peers[i]->site, peers[j]->site) == 0 &&
                (second == NULL || peers[j]->line < second->line)) {
                first = peers[i];
                second = peers[j];
            }
        }
    }
    free(peers);
    if (second != NULL) {
        return fail(err, errlen, path, second->line,
                    "a second 'peer' line for site '%s' (the first is at line %d); keep the one "
                    "key this site signs with there",
                    second->site, first->line);
    }
    return 0;
}

/* Sorts C's entries, refuses duplicate access keys, finds the store entry. */
static int
index_entries(struct creds *c, const char *path, char *err, size_t errlen)
{
    const struct creds_entry *first = NULL, *dup = NULL;
    size_t i;

    if (c->n > 1) {
        qsort(c->entries, c->n, sizeof(c->entries[0]), entry_cmp);
    }
    for (i = 0; i < c->n; i++) {
        if (c->entries[i].kind == CREDS_STORE) {
            c->store = &c->entries[i];
        }
        if (i > 0 && strcmp(c->entries[i - 1].access_key, c->entries[i].access_key) == 0 &&
            (dup == NULL || c->entries[i].line < dup->line)) {
            first = &c->entries[i - 1];
            dup = &c->entries[i];
        }
    }
    if (dup != NULL) {
        /* The key itself is left out: on a line with swapped columns it could be a secret. */
        return fail(err, errlen, path, dup->line, "duplicate access key (first defined at line %d)",
                    first->line);
    }
    return check_peers(c, path, err, errlen);
}

struct creds *
creds_load(const char *path, char *err, size_t errlen)
{
    struct creds *c;
    struct stat st;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail(err, errlen, path, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        fail(err, errlen, path, 0, "cannot stat: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        fail(err, errlen, path, 0, "not a regular file");
        close(fd);
        return NULL;
    }
    if ((st.st_mode & 077) != 0) {
        fail(err, errlen, path, 0, "permissions %04o are too open; run chmod 600 %s",
             (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return NULL;
    }
    rc = read_all(fd, &buf, &len, &cap);
    close(fd);
    if (rc != 0) {
        fail(err, errlen, path, 0, "cannot read (in memory kept out of core dumps): %s",
             strerror(rc));
        return NULL;
    }
    buf[len] = '\0'; /* read_all leaves a spare byte; parse_all relies on it */

    c = xcalloc(1, sizeof(*c));
    c->vault_size = secmem_size(len + 1); /* every secret and its NUL fits in the file's size */
    c->vault = secmem_alloc(c->vault_size);
    if (c->vault == NULL) {
        rc = fail(err, errlen, path, 0, "cannot map memory kept out of core dumps: %s",
                  strerror(errno));
    } else {
        rc = parse_all(c, buf, len, path, err, errlen);
    }
    if (rc == 0) {
        rc = index_entries(c, path, err, errlen);
    }
    secmem_free(buf, cap);
    if (rc != 0) {
        creds_destroy(c);
        return NULL;
    }
    return c;
}

static const struct creds_entry *
find_key(const struct creds *c, struct slice key)
{
    size_t lo = 0, hi = c->n, mid;
    int cmp;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        cmp = slice_cmp(slice_cstr(c->entries[mid].access_key), key);
        if (cmp == 0) {
            return &c->entries[mid];
        }
        if (cmp < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

const struct creds_entry *
creds_find_client(const struct creds *c, struct slice access_key)
{
    const struct creds_entry *e = find_key(c, access_key);

    return e != NULL && e->kind == CREDS_CLIENT ? e : NULL;
}

const struct creds_entry *
creds_store(const struct creds *c)
{
    return c->store;
}

const struct creds_entry *
creds_find_site_key(const struct creds *c, struct slice access_key)
{
    const struct creds_entry *e = find_key(c, access_key);

    return e != NULL && e->kind == CREDS_SITE ? e : NULL;
}

const struct creds_entry *
creds_find_site(const struct creds *c, struct slice site_id)
{
    const struct creds_entry *best = NULL;
    size_t i;

    for (i = 0; i < c->n; i++) {
        const struct creds_entry *e = &c->entries[i];

        if (e->kind == CREDS_SITE && slice_eq(slice_cstr(e->site), site_id) &&
            (best == NULL || e->line < best->line)) {
            best = e;
        }
    }
    return best;
}

const struct creds_entry *
creds_find_peer(const struct creds *c, struct slice site_id)
{
    size_t i;

    for (i = 0; i < c->n; i++) {
        if (c->entries[i].kind == CREDS_PEER && slice_eq(slice_cstr(c->entries[i].site), site_id)) {
            return &c->entries[i];
        }
    }
    return NULL;
}

size_t
creds_count(const struct creds *c)
{
    return c->n;
}

int
creds_bucket_allowed(const struct creds_entry *e, struct slice bucket)
{
    size_t i;

    if (e->all_buckets) {
        return 1;
    }
    for (i = 0; i < e->nbuckets; i++) {
        if (slice_eq(slice_cstr(e->buckets[i]), bucket)) {
            return 1;
        }
    }
    return 0;
}
