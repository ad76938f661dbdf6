/*
 * fuzz_conf_replicator.c - the replicator's config file: common/conf.c under
 * replicator/conf.c's table and validator (the credentials file it names is not read).
 *
 * Input: the file's bytes. Checks: a file that loads names this site, Redis, the store, a
 * credentials file and at least one peer that is not this site, each with a URL and a
 * Host; retry_max >= retry_base; one that does not has a one-line "path:..." message.
 */
#include "replicator/conf.c"

#include "fuzz.h"

#define PATH "fuzz/replicator.conf"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct repl_conf *cf = xcalloc(1, sizeof(*cf));
    struct conf_file f;
    char err[1024] = "";
    size_t i;
    int rc;

    cf->path = xstrdup(PATH);
    conf_init(&f, repl_conf_cmds);
    rc = conf_parse_text(&f, PATH, (const char *)data, size, cf, err, sizeof(err));
    if (rc == 0) {
        rc = validate(cf, &f, err, sizeof(err));
    }
    conf_deinit(&f);
    if (rc != 0) {
        FUZZ_CHECK(strncmp(err, PATH, strlen(PATH)) == 0 && err[strlen(PATH)] == ':');
        FUZZ_CHECK(strchr(err, '\n') == NULL);
    } else {
        FUZZ_CHECK(cf->site_id != NULL && cf->redis_host != NULL && cf->upstream != NULL);
        FUZZ_CHECK(cf->upstream_host != NULL && cf->credentials_file != NULL);
        FUZZ_CHECK(cf->region != NULL && cf->consumer != NULL && cf->npeers >= 1);
        FUZZ_CHECK(cf->retry_max_ms >= cf->retry_base_ms);
        for (i = 0; i < cf->npeers; i++) {
            FUZZ_CHECK(cf->peers[i].url != NULL && cf->peers[i].host != NULL);
            FUZZ_CHECK(strcmp(cf->peers[i].id, cf->site_id) != 0);
        }
    }
    repl_conf_free(cf);
    return 0;
}
