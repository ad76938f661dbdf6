/*
 * fuzz_conf_proxy.c - the proxy's config file: common/conf.c (line splitting, quoting,
 * typed setters, file:line errors) under proxy/conf.c's table and validator. The
 * credentials file it names is not read (fuzz_creds covers that parser).
 *
 * First byte: 0-254 loads the rest as proxy.conf; 255 checks conf_split alone.
 *   load    a file that loads has what the proxy relies on (an upstream host and port, a
 *           credentials file, a listener, max_request_line <= max_header_bytes, a region,
 *           site_id among the sites); one that does not has a one-line "path:..." message.
 *   split   each line split into words, every word written back quoted with escapes, splits
 *           back into the same words (the quoting rules have one reading).
 */
#include "proxy/conf.c"

#include "fuzz.h"

#define PATH "fuzz/proxy.conf"

static void
check_error(const char *err)
{
    FUZZ_CHECK(strncmp(err, PATH, strlen(PATH)) == 0);
    FUZZ_CHECK(err[strlen(PATH)] == ':' && strchr(err, '\n') == NULL);
}

static void
fuzz_split(const char *text, size_t len)
{
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = xstrndup(p, ll), *again, *words[CONF_MAX_WORDS], *words2[CONF_MAX_WORDS];
        const char *why = NULL;
        int n, n2, i;
        size_t w = 0;

        p += ll + 1;
        n = conf_split(line, words, CONF_MAX_WORDS, &why);
        if (n < 0) {
            FUZZ_CHECK(why != NULL);
            free(line);
            continue;
        }
        again = xmalloc(2 * ll + 3 * (size_t)n + 1);
        for (i = 0; i < n; i++) {
            const char *c;

            again[w++] = i ? ' ' : '"';
            if (i) {
                again[w++] = '"';
            }
            for (c = words[i]; *c; c++) {
                if (*c == '"' || *c == '\\') {
                    again[w++] = '\\';
                }
                again[w++] = *c;
            }
            again[w++] = '"';
        }
        again[w] = '\0';
        n2 = conf_split(again, words2, CONF_MAX_WORDS, &why);
        FUZZ_CHECK(n2 == n);
        for (i = 0; i < n; i++) {
            FUZZ_CHECK(strcmp(words[i], words2[i]) == 0);
        }
        free(again);
        free(line);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct proxy_conf *cf;
    struct conf_file f;
    char err[1024] = "";
    int rc;

    if (fuzz_byte(&in) == 255) {
        fuzz_split((const char *)in.p, in.len);
        return 0;
    }
    cf = xcalloc(1, sizeof(*cf));
    cf->path = xstrdup(PATH);
    conf_init(&f, proxy_conf_cmds);
    rc = conf_parse_text(&f, PATH, (const char *)in.p, in.len, cf, err, sizeof(err));
    if (rc == 0) {
        rc = validate(cf, &f, err, sizeof(err));
    }
    conf_deinit(&f);
    if (rc != 0) {
        check_error(err);
    } else {
        FUZZ_CHECK(cf->upstream != NULL && cf->upstream_host != NULL && cf->upstream_port != NULL);
        FUZZ_CHECK(cf->credentials_file != NULL && cf->region != NULL && cf->upstream_region);
        FUZZ_CHECK(cf->nlistens >= 1 && cf->max_request_line <= cf->max_header_bytes);
        FUZZ_CHECK(cf->site_id == NULL || find_site(cf, cf->site_id) != NULL);
        FUZZ_CHECK(cf->site_id != NULL || cf->replication == REPL_OFF);
    }
    conf_free(cf);
    return 0;
}
