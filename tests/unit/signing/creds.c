/* Unit tests for signing/creds.c: parsing, lookups, every refusal, and no secret in messages. */
#include "signing/creds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static char dir[] = "/tmp/s3tee-creds-XXXXXX";
static char path[256];
static char err[512];

/* Writes TEXT (LEN bytes) to PATH with MODE. */
static void
write_creds_len(const char *text, size_t len, mode_t mode)
{
    FILE *fp = fopen(path, "w");

    fwrite(text, 1, len, fp);
    fclose(fp);
    chmod(path, mode);
}

static void
write_creds(const char *text, mode_t mode)
{
    write_creds_len(text, strlen(text), mode);
}

/*
 * Expects TEXT (mode 0600) to be refused with "PATH<WANT_SUFFIX>", and no secret in the
 * message: every secret in these tests contains "SECRETVAL".
 */
static void
refused(const char *text, const char *want_suffix)
{
    char want[600];
    struct creds *c;

    write_creds(text, 0600);
    err[0] = '\0';
    c = creds_load(path, err, sizeof(err));
    ok(c == NULL, "refused: %s", want_suffix);
    snprintf(want, sizeof(want), "%s%s", path, want_suffix);
    ok_str(err, want, "message: %s", want_suffix);
    ok(strstr(err, "SECRETVAL") == NULL, "no secret in: %s", want_suffix);
    creds_destroy(c);
}

static void
test_good(void)
{
    static const char text[] =
        "# kind   access_key   secret               buckets\n"
        "client   AKIDSITE1    SECRETVAL1           *\n"
        "\n"
        "client\tAKREADONLY\tSECRETVAL2\tphotos,logs   # trailing comment\r\n"
        "   # indented comment\n"
        "store    AKIDCEPH     \"SECRETVAL ceph #3\"\n"
        "site     dc2          AKIDDC2              SECRETVAL4\n"
        "site     dc2          AKIDDC2B             SECRETVAL5\n"
        "client   AK.weird-key_1~+ SECRETVAL/6+x=  Logs_2024,a.b-c";
    const struct creds_entry *e;
    struct creds *c;

    write_creds(text, 0600);
    c = creds_load(path, err, sizeof(err));
    ok(c != NULL, "good file loads");
    if (c == NULL) {
        printf("# %s\n", err);
        return;
    }
    ok(creds_count(c) == 6, "six entries");
    e = creds_find_client(c, SLICE_LIT("AKIDSITE1"));
    ok(e != NULL && strcmp(e->secret, "SECRETVAL1") == 0 && e->all_buckets &&
           e->kind == CREDS_CLIENT && e->line == 2,
       "client with *");
    ok(e && creds_bucket_allowed(e, SLICE_LIT("anything")), "* allows any bucket");
    e = creds_find_client(c, SLICE_LIT("AKREADONLY"));
    ok(e != NULL && strcmp(e->secret, "SECRETVAL2") == 0 && !e->all_buckets && e->nbuckets == 2 &&
           strcmp(e->buckets[0], "photos") == 0 && strcmp(e->buckets[1], "logs") == 0 &&
           e->line == 4,
       "client with a bucket list, tabs, CRLF and a trailing comment");
    ok(e && creds_bucket_allowed(e, SLICE_LIT("photos")) &&
           creds_bucket_allowed(e, SLICE_LIT("logs")),
       "listed buckets allowed");
    ok(e && !creds_bucket_allowed(e, SLICE_LIT("photo")) &&
           !creds_bucket_allowed(e, SLICE_LIT("photoss")) &&
           !creds_bucket_allowed(e, SLICE_LIT("Photos")) && !creds_bucket_allowed(e, SLICE_LIT("")),
       "other buckets refused (exact match)");
    e = creds_store(c);
    ok(e != NULL && strcmp(e->access_key, "AKIDCEPH") == 0 &&
           strcmp(e->secret, "SECRETVAL ceph #3") == 0 && e->kind == CREDS_STORE,
       "store key, quoted secret with a space and '#'");
    ok(creds_find_client(c, SLICE_LIT("AKIDCEPH")) == NULL, "store key is not a client key");
    e = creds_find_site_key(c, SLICE_LIT("AKIDDC2"));
    ok(e != NULL && strcmp(e->site, "dc2") == 0 && strcmp(e->secret, "SECRETVAL4") == 0 &&
           e->kind == CREDS_SITE,
       "site key");
    ok(creds_find_client(c, SLICE_LIT("AKIDDC2")) == NULL, "site key is not a client key");
    ok(creds_find_site_key(c, SLICE_LIT("AKIDSITE1")) == NULL, "client key is not a site key");
    e = creds_find_site(c, SLICE_LIT("dc2"));
    ok(e != NULL && strcmp(e->access_key, "AKIDDC2") == 0, "first key of a site");
    ok(creds_find_site(c, SLICE_LIT("dc3")) == NULL, "unknown site");
    e = creds_find_client(c, SLICE_LIT("AK.weird-key_1~+"));
    ok(e != NULL && strcmp(e->secret, "SECRETVAL/6+x=") == 0 &&
           creds_bucket_allowed(e, SLICE_LIT("Logs_2024")) &&
           creds_bucket_allowed(e, SLICE_LIT("a.b-c")),
       "unusual key, secret and bucket characters; last line without newline");
    ok(creds_find_client(c, SLICE_LIT("AKID")) == NULL, "prefix of a key not found");
    ok(creds_find_client(c, SLICE_LIT("AKIDSITE1X")) == NULL, "extension of a key not found");
    ok(creds_find_client(c, SLICE_NULL) == NULL, "empty key not found");
    creds_destroy(c);
    creds_destroy(NULL);
    ok(1, "creds_destroy(NULL) is a no-op");
}

static void
test_many(void)
{
    size_t cap = 64 * 1024, off = 0, i, found = 0;
    char *text = malloc(cap), key[32];
    struct creds *c;

    for (i = 0; i < 1000; i++) {
        off += (size_t)snprintf(text + off, cap - off, "client AK%04zu SECRETVAL%zu b%zu\n",
                                (i * 7919) % 1000, i, i);
    }
    off += (size_t)snprintf(text + off, cap - off, "store AKSTORE SECRETVALS\n");
    write_creds_len(text, off, 0400);
    c = creds_load(path, err, sizeof(err));
    ok(c != NULL && creds_count(c) == 1001, "1001 entries over several read buffers (mode 0400)");
    for (i = 0; c && i < 1000; i++) {
        const struct creds_entry *e;

        snprintf(key, sizeof(key), "AK%04zu", i);
        e = creds_find_client(c, slice_cstr(key));
        found += e != NULL && strcmp(e->access_key, key) == 0;
    }
    ok(found == 1000, "every key found by binary search");
    creds_destroy(c);
    free(text);
}

static void
test_malformed(void)
{
    static const char nul[] = "store AK SECRETVAL\nclient A\0B SECRETVAL *\n";
    char want[600], big[300];
    struct creds *c;

    refused("store AKS SECRETVALS\n# c\n\nclient AK SECRETVAL\n",
            ":4: expected 'client ACCESS_KEY SECRET BUCKETS'");
    refused("store AKS SECRETVALS\nclient AK SECRETVAL * extra\n",
            ":2: expected 'client ACCESS_KEY SECRET BUCKETS'");
    refused("store AKS\n", ":1: expected 'store ACCESS_KEY SECRET'");
    refused("store AKS SECRETVALS *\n", ":1: expected 'store ACCESS_KEY SECRET'");
    refused("store AKS SECRETVALS\nsite dc2 AKD\n",
            ":2: expected 'site SITE_ID ACCESS_KEY SECRET'");
    refused("store AKS SECRETVALS\nclinet AK SECRETVAL *\n",
            ":2: expected a line starting with client, store or site");
    refused("SECRETVAL\nstore AKS SECRETVALS\n",
            ":1: expected a line starting with client, store or site");
    refused("store AKS SECRETVALS\nclient AK SECRETVAL a b c d e f g h i j\n",
            ":2: expected 'client ACCESS_KEY SECRET BUCKETS'");
    refused("store AKS SECRETVALS\nclient AK SECRETVAL photos,,logs\n",
            ":2: expected BUCKETS to be * or bucket names separated by commas in "
            "'client ACCESS_KEY SECRET BUCKETS'");
    refused("store AKS SECRETVALS\nclient AK SECRETVAL photos,*\n",
            ":2: expected BUCKETS to be * or bucket names separated by commas in "
            "'client ACCESS_KEY SECRET BUCKETS'");
    refused("store AKS SECRETVALS\nclient AK SECRETVAL photos,\n",
            ":2: expected BUCKETS to be * or bucket names separated by commas in "
            "'client ACCESS_KEY SECRET BUCKETS'");
    refused("store AKS SECRETVALS\nclient AK SECRETVAL \"\"\n",
            ":2: expected BUCKETS to be * or bucket names separated by commas in "
            "'client ACCESS_KEY SECRET BUCKETS'");
    refused("store AKS SECRETVALS\nclient SECRETVAL/x AK *\n",
            ":2: expected an ACCESS_KEY without '/', ',', '=' or quotes in "
            "'client ACCESS_KEY SECRET BUCKETS'");
    refused("store \"\" SECRETVALS\n",
            ":1: expected an ACCESS_KEY without '/', ',', '=' or quotes in "
            "'store ACCESS_KEY SECRET'");
    refused("store AKS \"\"\n", ":1: empty secret in 'store ACCESS_KEY SECRET'");
    refused("store AKS SECRETVALS\nsite dc/2 AKD SECRETVAL\n",
            ":2: expected a SITE_ID of letters, digits, '.', '_' or '-' in "
            "'site SITE_ID ACCESS_KEY SECRET'");
    refused("store AKS SECRETVALS\nclient AK \"SECRETVAL *\n", ":2: unterminated quote");
    refused("store AKS SECRETVALS\nclient AK \"SECRETVAL\"x *\n",
            ":2: expected a space after a closing quote");
    refused("store AKS SECRETVALS\n\nstore AKT SECRETVALT\n",
            ":3: a second 'store' line (the first is at line 1)");

    write_creds_len(nul, sizeof(nul) - 1, 0600);
    c = creds_load(path, err, sizeof(err));
    snprintf(want, sizeof(want), "%s:2: line contains a NUL byte", path);
    ok(c == NULL, "NUL byte refused");
    ok_str(err, want, "NUL byte message");

    snprintf(big, sizeof(big), "store AKS SECRETVALS\nclient AK SECRETVAL%0200d a,,b\n", 0);
    write_creds(big, 0600);
    c = creds_load(path, err, 40);
    ok(c == NULL && strlen(err) == 39 && strstr(err, "SECRETVAL") == NULL,
       "short error buffer is filled and terminated");
    snprintf(big, sizeof(big), "store AKS SECRETVALS\nclient AK SECRETVAL%0200d *\n", 0);
    write_creds(big, 0600);
    c = creds_load(path, err, sizeof(err));
    ok(c != NULL, "long secret accepted");
    creds_destroy(c);
}

static void
test_duplicates_and_store(void)
{
    refused("client AK1 SECRETVAL1 *\nstore AKS SECRETVALS\n\n\nclient AK1 SECRETVAL2 b\n",
            ":5: duplicate access key (first defined at line 1)");
    refused("client AKS SECRETVAL1 *\nstore AKS SECRETVALS\n",
            ":2: duplicate access key (first defined at line 1)");
    refused("store AKS SECRETVALS\nsite dc2 AKX SECRETVAL\nclient B SECRETVAL *\n"
            "client AKX SECRETVAL *\nclient B SECRETVAL *\n",
            ":4: duplicate access key (first defined at line 2)");
    refused("client AK1 SECRETVAL1 *\n", ": no 'store' line");
    refused("", ": no 'store' line");
    refused("# only comments\n\n", ": no 'store' line");
}

static void
test_files(void)
{
    static const char good[] = "store AKS SECRETVALS\n";
    static const mode_t open_modes[] = {0644, 0640, 0604, 0660, 0602, 0620, 0610, 0601};
    char want[600];
    struct creds *c;
    size_t i;

    for (i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
        write_creds(good, open_modes[i]);
        c = creds_load(path, err, sizeof(err));
        snprintf(want, sizeof(want), "%s: permissions %04o are too open; run chmod 600 %s", path,
                 (unsigned)open_modes[i], path);
        ok(c == NULL, "mode %04o refused", (unsigned)open_modes[i]);
        ok_str(err, want, "mode %04o message", (unsigned)open_modes[i]);
        creds_destroy(c);
    }
    write_creds(good, 0600);
    c = creds_load(path, err, sizeof(err));
    ok(c != NULL && creds_store(c) != NULL, "mode 0600 accepted");
    creds_destroy(c);

    c = creds_load("/nonexistent/creds.txt", err, sizeof(err));
    ok(c == NULL, "missing file refused");
    ok_str(err, "/nonexistent/creds.txt: cannot open: No such file or directory",
           "missing file message");
    c = creds_load(dir, err, sizeof(err));
    snprintf(want, sizeof(want), "%s: not a regular file", dir);
    ok(c == NULL, "directory refused");
    ok_str(err, want, "directory message");
}

static void
test_peer(void)
{
    struct creds *c;
    const struct creds_entry *e;

    write_creds("store AKS SECRETVAL1\n"
                "site b AKFROMB SECRETVAL2\n"
                "peer b AKTOB SECRETVAL3\n",
                0600);
    c = creds_load(path, err, sizeof(err));
    ok(c != NULL, "peer line accepted");
    e = c ? creds_find_peer(c, SLICE_LIT("b")) : NULL;
    ok(e != NULL && strcmp(e->access_key, "AKTOB") == 0 && e->kind == CREDS_PEER,
       "peer key found by site id");
    ok(c && creds_find_peer(c, SLICE_LIT("c")) == NULL, "unknown peer site");
    ok(c && creds_find_site_key(c, SLICE_LIT("AKTOB")) == NULL,
       "a peer key is not accepted as a site key here");
    ok(c && creds_find_client(c, SLICE_LIT("AKTOB")) == NULL, "nor as a client key");
    creds_destroy(c);
    refused("store AKS SECRETVAL1\npeer b AKTOB\n",
            ":2: expected 'peer SITE_ID ACCESS_KEY SECRET'");
    refused("store AKS SECRETVAL1\npeer b AKTOB SECRETVAL3\npeer c AKTOC SECRETVAL4\n"
            "peer c AKTOC2 SECRETVAL5\npeer b AATOB2 SECRETVAL6\n",
            ":4: a second 'peer' line for site 'c' (the first is at line 3); keep the one key this "
            "site signs with there");

    /* a peer's key rotating: both of its 'site' keys are valid at once */
    write_creds("store AKS SECRETVAL1\n"
                "site b AKFROMB SECRETVAL2\n"
                "site b AKFROMB2 SECRETVAL3\n",
                0600);
    c = creds_load(path, err, sizeof(err));
    ok(c != NULL, "two site keys for one site accepted");
    e = c ? creds_find_site_key(c, SLICE_LIT("AKFROMB")) : NULL;
    ok(e != NULL && strcmp(e->site, "b") == 0 && strcmp(e->secret, "SECRETVAL2") == 0,
       "the old site key is found");
    e = c ? creds_find_site_key(c, SLICE_LIT("AKFROMB2")) : NULL;
    ok(e != NULL && strcmp(e->site, "b") == 0 && strcmp(e->secret, "SECRETVAL3") == 0,
       "the new site key is found");
    creds_destroy(c);
}

int
main(void)
{
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/creds.txt", dir);
    test_good();
    test_many();
    test_malformed();
    test_duplicates_and_store();
    test_files();
    test_peer();
    unlink(path);
    rmdir(dir);
    return done_testing();
}
