/* gc.c - drops causally stable tombstones (see gc.h). */
#include "replicator/gc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "common/log.h"
#include "common/pool.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "queue/queue.h"
#include "replicator/conf.h"
#include "replicator/sites.h"

#define GC_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define GC_SCAN_COUNT "500"     /* keys per SCAN step, and so per sweep script */
#define GC_STEPS_PER_ROUND 40   /* SCAN steps per round; the cursor carries on next round */
#define GC_MPU_MAX_AGE_MS "691200000" /* 8 days: the stamp key lives 7 (proxy/req.c) */

/* Stamp text ("<16 hex>.<site>") or HLC text -> its ms, nil when malformed. */
#define GC_LUA_SMS                                                                                 \
    "local function sms(s)\n"                                                                      \
    "  if type(s) ~= 'string' or #s < 16 then return nil end\n"                                    \
    "  local h = string.sub(s, 1, 12)\n"                                                           \
    "  if not string.match(h, '^[0-9a-f]+$') then return nil end\n"                                \
    "  return tonumber(h, 16)\n"                                                                   \
    "end\n"

/*
 * low_water
 * KEYS: hlc, open, mpus, log, dead, lw, then s3tee:rebuild:<peer> for each peer
 * ARGV: site, now_ms, mpu_max_age_ms, scan_limit, then each peer's id (KEYS' order)
 * Moves the HLC up to NOW (counter 0) when it is behind, computes LW (gc.h), HSETs
 * lw[site] = "<LW> <now>" and returns {LW, why, H, why} as strings: H is the least of LW and
 * every peer's published figure (0 for a peer not heard from).
 */
static const char gc_lw_script[] =
    GC_LUA_SMS
    "local now, maxage, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local npeers = #ARGV - 4\n"
    "local hms = 0\n"
    "local h = redis.call('GET', KEYS[1])\n"
    "if h then\n"
    "  hms = sms(h)\n"
    "  if not hms then return redis.error_reply('S3TEE s3tee:hlc is not 16 hex digits') end\n"
    "end\n"
    "if now > hms then\n"
    "  redis.call('SET', KEYS[1], string.format('%06x%06x0000', math.floor(now / 16777216),\n"
    "                                           now % 16777216))\n"
    "  hms = now\n"
    "end\n"
    "local lw, why = hms, 'the clock'\n"
    "local function low(v, w)\n"
    "  if v and v < lw then lw, why = v, w end\n"
    "end\n"
    "local o = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')\n"
    "if o[2] then low(tonumber(o[2]), 'a local write in progress') end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%.0f', now - maxage))\n"
    "o = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')\n"
    "if o[2] then low(tonumber(o[2]), 'open multipart upload ' .. o[1]) end\n"
    "local function entries(r, w)\n"
    "  for _, e in ipairs(r) do\n"
    "    local f = e[2]\n"
    "    for j = 1, #f - 1, 2 do\n"
    "      if f[j] == 'stamp' then low(sms(f[j + 1]) or 0, w) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "for i = 1, npeers do\n"
    "  if redis.call('EXISTS', KEYS[6 + i]) == 1 then\n"
    "    lw, why = 0, 'peer ' .. ARGV[4 + i] .. ' is marked for rebuild'\n"
    "  end\n"
    "end\n"
    "local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[4])\n"
    "if lw > 0 and ok then\n"
    "  local by = {}\n"
    "  for _, g in ipairs(groups) do\n"
    "    local t = {}\n"
    "    for j = 1, #g - 1, 2 do t[g[j]] = g[j + 1] end\n"
    "    if t['name'] then by[t['name']] = t end\n"
    "  end\n"
    "  for i = 1, npeers do\n"
    "    local p = ARGV[4 + i]\n"
    "    local g = by['peer:' .. p]\n"
    "    if not g then\n"
    "      lw, why = 0, 'peer ' .. p .. ' has no consumer group yet'\n"
    "      break\n"
    "    end\n"
    "    local start = '(' .. g['last-delivered-id']\n"
    "    if tonumber(g['pending']) > 0 then\n"
    "      start = redis.call('XPENDING', KEYS[4], 'peer:' .. p)[2]\n"
    "    end\n"
    "    local r = redis.call('XRANGE', KEYS[4], start, '+', 'COUNT', limit + 1)\n"
    "    if #r > limit then\n"
    "      lw, why = 0, 'peer ' .. p .. ' owes more than gc_scan_limit entries'\n"
    "      break\n"
    "    end\n"
    "    entries(r, 'an entry peer ' .. p .. ' has not acknowledged')\n"
    "  end\n"
    "end\n"
    "if lw > 0 then\n"
    "  if redis.call('XLEN', KEYS[5]) > limit then\n"
    "    lw, why = 0, 'more than gc_scan_limit dead letters'\n"
    "  else\n"
    "    entries(redis.call('XRANGE', KEYS[5], '-', '+'), 'a dead letter')\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', KEYS[6], ARGV[1], string.format('%.0f %.0f', lw, now))\n"
    "local hz, hwhy = lw, 'this site: ' .. why\n"
    "for i = 1, npeers do\n"
    "  local p = ARGV[4 + i]\n"
    "  local v = redis.call('HGET', KEYS[6], p)\n"
    "  local n = v and tonumber(string.match(v, '^(%d+)'))\n"
    "  if not n then\n"
    "    if hz > 0 then hz, hwhy = 0, 'no low-water figure from peer ' .. p .. ' yet' end\n"
    "  elseif n < hz then\n"
    "    hz, hwhy = n, 'peer ' .. p\n"
    "  end\n"
    "end\n"
    "return {string.format('%.0f', lw), why, string.format('%.0f', hz), hwhy}\n";

/*
 * sweep
 * KEYS: repair, then index keys (s3tee:o:<bucket>/<key>)
 * ARGV: cutoff ms
 * DELs each index key that is a tombstone, or holds only a tag register (a peer's tag change
 * that found no object here), whose data and tag stamps are below the cutoff,
 * with no lease on the key and the key not in the repair set. Returns how many went.
 */
static const char gc_sweep_script[] =
    GC_LUA_SMS
    "local cut, n = tonumber(ARGV[1]), 0\n"
    "for i = 2, #KEYS do\n"
    "  local k = KEYS[i]\n"
    "  local f = redis.call('HMGET', k, 'del', 'st', 'tst')\n"
    "  if f[1] == '1' or (not f[2] and f[3]) then\n"
    "    local a = sms(f[2]) or (not f[2] and 0)\n"
    "    local b = sms(f[3]) or a\n"
    "    if a and b and a < cut and b < cut then\n"
    "      local name = string.sub(k, 9)\n"
    "      if redis.call('EXISTS', 's3tee:l:' .. name) == 0 and\n"
    "         not redis.call('ZSCORE', KEYS[1], name) then\n"
    "        redis.call('DEL', k)\n"
    "        n = n + 1\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return n\n";

enum gc_state { GC_IDLE = 0, GC_LW, GC_RUN };

struct gc;

/* One heartbeat in flight to a peer. */
struct gc_beat {
    struct gc *g;
    struct site *peer;          /* borrowed */
    struct upstream_xfer *x;    /* in flight, or NULL */
    int status;
};

struct gc {
    struct event_base *evb;
    struct queue *q;            /* the site's Redis (borrowed) */
    struct sites *sites;        /* peers to publish to (borrowed) */
    const struct repl_conf *cf; /* borrowed */
    struct event *tick;         /* round timer (owned) */
    enum gc_state state;
    int stopped;
    struct pool pool;           /* this round's strings; reset per round */
    struct gc_beat *beats;      /* one per peer (owned) */
    char lw[24];                /* this round's LW, decimal ms */
    int64_t cutoff_ms;          /* this round's sweep cutoff */
    char cursor[32];            /* SCAN cursor, carried across rounds */
    int steps;                  /* SCAN steps this round */
    int64_t round_dropped;      /* tombstones dropped this round */
    struct gc_stats stats;
};

static void gc_round_end(struct gc *g);
static void gc_scan_step(struct gc *g);

static void
gc_sweep_done(struct gc *g)
{
    gc_round_end(g);
}

/* --- sweep -------------------------------------------------------------------------------- */

static void
gc_on_swept(void *arg, const char *errstr, redisReply *r)
{
    struct gc *g = arg;

    if (g->stopped) {
        return;
    }
    if (errstr != NULL || r == NULL || r->type != REDIS_REPLY_INTEGER) {
        log_warn("gc", "dropping tombstones: %s; next round", errstr ? errstr : "bad reply");
        gc_sweep_done(g);
        return;
    }
    g->round_dropped += r->integer;
    g->stats.dropped += r->integer;
    if (strcmp(g->cursor, "0") == 0 || ++g->steps >= GC_STEPS_PER_ROUND) {
        gc_sweep_done(g);
        return;
    }
    gc_scan_step(g);
}

static void
gc_on_scan(void *arg, const char *errstr, redisReply *r)
{
    struct gc *g = arg;
    const redisReply *keys;
    const char **argv;
    size_t *argvlen, i, n;
    char cut[24];

    if (g->stopped) {
        return;
    }
    if (errstr != NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
        log_warn("gc", "SCAN of the index: %s; next round", errstr ? errstr : "bad reply");
        gc_sweep_done(g);
        return;
    }
    snprintf(g->cursor, sizeof(g->cursor), "%.*s", (int)r->element[0]->len, r->element[0]->str);
    keys = r->element[1];
    if (keys->elements == 0) {
        gc_on_swept(g, NULL, &(redisReply){.type = REDIS_REPLY_INTEGER, .integer = 0});
        return;
    }
    n = 5 + keys->elements;
    argv = pool_alloc(&g->pool, n * sizeof(*argv));
    argvlen = pool_alloc(&g->pool, n * sizeof(*argvlen));
    snprintf(cut, sizeof(cut), "%" PRId64, g->cutoff_ms);
    argv[0] = "EVAL";
    argv[1] = gc_sweep_script;
    argv[2] = pool_printf(&g->pool, "%zu", keys->elements + 1);
    argv[3] = QUEUE_KEY_REPAIR;
    for (i = 0; i < 4; i++) {
        argvlen[i] = strlen(argv[i]);
    }
    for (i = 0; i < keys->elements; i++) {
        argv[4 + i] = keys->element[i]->str ? keys->element[i]->str : "";
        argvlen[4 + i] = keys->element[i]->str ? keys->element[i]->len : 0;
    }
    argv[n - 1] = pool_strndup(&g->pool, cut, strlen(cut));
    argvlen[n - 1] = strlen(cut);
    if (queue_command_argv(g->q, (int)n, argv, argvlen, gc_on_swept, g) != 0) {
        gc_sweep_done(g);
    }
}

static void
gc_scan_step(struct gc *g)
{
    const char *argv[6] = {"SCAN", g->cursor, "MATCH", "s3tee:o:*", "COUNT", GC_SCAN_COUNT};
    size_t len[6], i;

    for (i = 0; i < 6; i++) {
        len[i] = strlen(argv[i]);
    }
    if (queue_command_argv(g->q, 6, argv, len, gc_on_scan, g) != 0) {
        gc_sweep_done(g);
    }
}

static void
gc_start_sweep(struct gc *g)
{
    g->steps = 0;
    if (g->cutoff_ms <= 0) {
        gc_sweep_done(g); /* nothing can go: skip the scan */
        return;
    }
    gc_scan_step(g);
}

/* --- heartbeats ------------------------------------------------------------------------------ */

static size_t
gc_no_body(void *arg, char *buf, size_t max)
{
    (void)arg;
    (void)buf;
    (void)max;
    return 0;
}

static void
gc_on_header(void *arg, struct slice name, struct slice value)
{
    (void)arg;
    (void)name;
    (void)value;
}

static void
gc_on_head(void *arg, int status)
{
    struct gc_beat *b = arg;

    b->status = status;
}

static int
gc_on_body(void *arg, const char *data, size_t len)
{
    (void)arg;
    (void)data;
    (void)len;
    return 0; /* the listing is not needed: the header was the message */
}

static void
gc_on_beat_done(void *arg, const char *errstr)
{
    struct gc_beat *b = arg;
    struct gc *g = b->g;

    b->x = NULL;
    if (g->stopped) {
        return;
    }
    if (errstr != NULL || b->status / 100 != 2) {
        log_debug("gc", "publishing the low-water figure to site=%s: %s (HTTP %d); its "
                        "tombstones wait",
                  b->peer->id, errstr ? errstr : "refused", b->status);
    }
}

static const struct upstream_xfer_ops gc_beat_ops = {
    .read_body = gc_no_body,
    .on_header = gc_on_header,
    .on_head = gc_on_head,
    .on_body = gc_on_body,
    .on_done = gc_on_beat_done,
};

static void
gc_start_beats(struct gc *g)
{
    struct sigv4_header h;
    size_t i;

    h.name = SLICE_LIT("x-s3tee-low-water");
    h.value = slice_cstr(g->lw);
    for (i = 0; i < g->sites->npeers; i++) {
        struct gc_beat *b = &g->beats[i];
        struct sites_request rq;

        memset(&rq, 0, sizeof(rq));
        rq.method = "GET";
        rq.path = "/";
        rq.query = "";
        rq.headers = &h;
        rq.nheaders = 1;
        rq.payload = GC_EMPTY_SHA256;
        if (b->x != NULL) {
            continue; /* the last one still hangs (a partition): the next round tries again */
        }
        b->status = 0;
        b->x = sites_start(b->peer, &g->pool, &rq, -1, &gc_beat_ops, b);
    }
}

/* --- low water ------------------------------------------------------------------------------- */

static const char *
gc_str(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ? r->str : "";
}

static void
gc_on_lw(void *arg, const char *errstr, redisReply *r)
{
    struct gc *g = arg;
    int64_t now = timeutil_now_ms(), hz;

    if (g->stopped) {
        return;
    }
    if (errstr != NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
        log_warn("gc", "computing the low-water figure: %s; next round",
                 errstr ? errstr : "bad reply");
        gc_round_end(g);
        return;
    }
    snprintf(g->lw, sizeof(g->lw), "%s", gc_str(r->element[0]));
    g->stats.low_water_ms = strtoll(g->lw, NULL, 10);
    hz = strtoll(gc_str(r->element[2]), NULL, 10);
    g->cutoff_ms = hz;
    if (now - g->cf->tombstone_keep_ms < g->cutoff_ms) {
        g->cutoff_ms = now - g->cf->tombstone_keep_ms;
    }
    g->stats.horizon_ms = g->cutoff_ms;
    log_debug("gc", "site=%s low water %s ms (held by %s); horizon %" PRId64 " ms (held by %s); "
                    "tombstones below %" PRId64 " ms may go",
              g->cf->site_id, g->lw, gc_str(r->element[1]), hz, gc_str(r->element[3]),
              g->cutoff_ms);
    g->state = GC_RUN;
    g->round_dropped = 0;
    gc_start_beats(g);
    gc_start_sweep(g);
}

static void
gc_round_end(struct gc *g)
{
    if (g->round_dropped > 0) {
        log_info("gc", "site=%s dropped %" PRId64 " causally stable tombstones (stamps below "
                       "%" PRId64 " ms)",
                 g->cf->site_id, g->round_dropped, g->cutoff_ms);
    }
    if (g->state != GC_IDLE) {
        g->stats.rounds++;
    }
    g->state = GC_IDLE;
    g->round_dropped = 0;
    pool_deinit(&g->pool);
    pool_init(&g->pool);
}

static void
gc_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct gc *g = arg;
    size_t npeers = g->cf->npeers, n = 10 + 2 * npeers, i;
    const char **argv;
    size_t *len;

    (void)fd;
    (void)what;
    if (g->stopped || g->state != GC_IDLE) {
        return; /* the last round is still running */
    }
    g->state = GC_LW;
    argv = pool_alloc(&g->pool, (n + 4) * sizeof(*argv));
    len = pool_alloc(&g->pool, (n + 4) * sizeof(*len));
    argv[0] = "EVAL";
    argv[1] = gc_lw_script;
    argv[2] = pool_printf(&g->pool, "%zu", 6 + npeers);
    argv[3] = "s3tee:hlc";
    argv[4] = QUEUE_KEY_OPEN;
    argv[5] = QUEUE_KEY_MPUS;
    argv[6] = "s3tee:log";
    argv[7] = "s3tee:dead";
    argv[8] = QUEUE_KEY_LW;
    for (i = 0; i < npeers; i++) {
        argv[9 + i] = pool_printf(&g->pool, "s3tee:rebuild:%s", g->cf->peers[i].id);
    }
    argv[9 + npeers] = g->cf->site_id;
    argv[10 + npeers] = pool_printf(&g->pool, "%" PRId64, timeutil_now_ms());
    argv[11 + npeers] = GC_MPU_MAX_AGE_MS;
    argv[12 + npeers] = pool_printf(&g->pool, "%d", g->cf->gc_scan_limit);
    for (i = 0; i < npeers; i++) {
        argv[13 + npeers + i] = g->cf->peers[i].id;
    }
    n = 13 + 2 * npeers;
    for (i = 0; i < n; i++) {
        len[i] = strlen(argv[i]);
    }
    if (queue_command_argv(g->q, (int)n, argv, len, gc_on_lw, g) != 0) {
        gc_round_end(g);
    }
}

struct gc *
gc_create(struct event_base *evb, struct queue *q, struct sites *sites, const struct repl_conf *cf)
{
    struct gc *g = xcalloc(1, sizeof(*g));
    size_t i;

    g->evb = evb;
    g->q = q;
    g->sites = sites;
    g->cf = cf;
    g->tick = event_new(evb, -1, EV_PERSIST, gc_on_tick, g);
    g->beats = xcalloc(sites->npeers ? sites->npeers : 1, sizeof(*g->beats));
    for (i = 0; i < sites->npeers; i++) {
        g->beats[i].g = g;
        g->beats[i].peer = &sites->peers[i];
    }
    strcpy(g->cursor, "0");
    g->stats.low_water_ms = -1;
    g->stats.horizon_ms = -1;
    pool_init(&g->pool);
    return g;
}

void
gc_start(struct gc *g)
{
    struct timeval tv;

    if (g->cf->gc_interval_ms <= 0) {
        return;
    }
    tv.tv_sec = (time_t)(g->cf->gc_interval_ms / 1000);
    tv.tv_usec = (suseconds_t)(g->cf->gc_interval_ms % 1000) * 1000;
    event_add(g->tick, &tv);
    event_active(g->tick, 0, 0);
}

void
gc_stop(struct gc *g)
{
    size_t i;

    g->stopped = 1;
    event_del(g->tick);
    for (i = 0; i < g->sites->npeers; i++) {
        if (g->beats[i].x != NULL) {
            upstream_abort(g->beats[i].x);
            g->beats[i].x = NULL;
        }
    }
}

void
gc_destroy(struct gc *g)
{
    if (g == NULL) {
        return;
    }
    event_free(g->tick);
    free(g->beats);
    pool_deinit(&g->pool);
    free(g);
}

const struct gc_stats *
gc_stats(const struct gc *g)
{
    return &g->stats;
}
