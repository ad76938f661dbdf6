/* rebuild.c - marking a peer for resync (see rebuild.h). */
#include "replicator/rebuild.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "common/timeutil.h"
#include "common/xalloc.h"

/*
 * One script, so the mark and the group's restart are one fact. since_ms only moves back:
 * a mark no resync has cleared yet keeps its older time. Lua numbers are doubles, exact for
 * millisecond times.
 *   KEYS: s3tee:rebuild:<peer>, s3tee:log
 *   ARGV: group, since_ms, now_ms, reason, marking site, drop ("1"/"0")
 */
static const char rebuild_mark_lua[] =
    "local since = tonumber(ARGV[2])\n"
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then\n"
    "  local ok, old = pcall(cjson.decode, cur)\n"
    "  if ok and type(old) == 'table' and tonumber(old.since_ms)\n"
    "     and tonumber(old.since_ms) < since then\n"
    "    since = tonumber(old.since_ms)\n"
    "  end\n"
    "end\n"
    "redis.call('SET', KEYS[1], cjson.encode({since_ms = since, marked_ms = tonumber(ARGV[3]),\n"
    "  reason = ARGV[4], marked_by = ARGV[5]}))\n"
    "if ARGV[6] == '1' then\n"
    "  pcall(redis.call, 'XGROUP', 'DESTROY', KEYS[2], ARGV[1])\n"
    "  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[1], '$', 'MKSTREAM')\n"
    "end\n"
    "return since\n";

struct rebuild_call {
    rebuild_cb cb;
    void *arg;
};

static void
rebuild_on_reply(void *arg, const char *errstr, struct redisReply *r)
{
    struct rebuild_call *c = arg;

    if (c->cb != NULL) {
        if (errstr == NULL && (r == NULL || r->type != REDIS_REPLY_INTEGER)) {
            errstr = "unexpected reply to the mark script";
        }
        c->cb(c->arg, errstr, errstr == NULL ? (int64_t)r->integer : 0);
    }
    free(c);
}

int
rebuild_mark(struct queue *q, const char *peer, const char *site, int64_t since_ms,
             const char *reason, int drop_queue, rebuild_cb cb, void *arg)
{
    struct rebuild_call *c = xcalloc(1, sizeof(*c));
    char key[160], group[160], since[24], now[24];
    const char *argv[11];
    size_t len[11], i;

    c->cb = cb;
    c->arg = arg;
    snprintf(key, sizeof(key), "s3tee:rebuild:%s", peer);
    snprintf(group, sizeof(group), "peer:%s", peer);
    snprintf(since, sizeof(since), "%lld", (long long)since_ms);
    snprintf(now, sizeof(now), "%lld", (long long)timeutil_now_ms());
    argv[0] = "EVAL";
    argv[1] = rebuild_mark_lua;
    argv[2] = "2";
    argv[3] = key;
    argv[4] = "s3tee:log";
    argv[5] = group;
    argv[6] = since;
    argv[7] = now;
    argv[8] = reason;
    argv[9] = site;
    argv[10] = drop_queue ? "1" : "0";
    for (i = 0; i < 11; i++) {
        len[i] = strlen(argv[i]);
    }
    if (queue_command_argv(q, 11, argv, len, rebuild_on_reply, c) != 0) {
        free(c);
        return -1;
    }
    return 0;
}
