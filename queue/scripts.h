/*
 * scripts.h - the Lua scripts (Lua 5.1 in Redis 7.0) behind queue.c, as C strings.
 * Included by queue.c only. Key names and flows: notes/replication.md.
 *
 * Lua numbers are doubles (53-bit), so the 64-bit HLC never lives in one number: s3tee:hlc
 * holds it as 16 lowercase hex digits ("0191f2a3b4c50001" = 48-bit ms, 16-bit counter) and
 * the scripts do max/increment on the (ms, counter) pair. Lua's '<' on strings uses
 * strcoll() (the server's locale), so stamps are compared byte by byte with bcmp().
 *
 * begin_local and begin_replica return the same ten strings:
 *   { verdict, stamp, new_vv, exists, st, vv, del, etag, size, tst, tags }
 * verdict is GO | BUSY | STALE | FUTURE; stamp is the minted (local) or incoming (replica)
 * stamp; new_vv the index vector with this site's counter + 1 (local only); then the
 * index entry before the write ("" for missing fields; exists is "1" or "0").
 */
#ifndef S3TEE_QUEUE_SCRIPTS_H
#define S3TEE_QUEUE_SCRIPTS_H

/* Shared helpers, prepended to every script. */
#define SCRIPT_PRELUDE                                                                             \
    "local function bcmp(a, b)\n"                                                                  \
    "  if a == b then return 0 end\n"                                                              \
    "  local n = math.min(#a, #b)\n"                                                               \
    "  for i = 1, n do\n"                                                                          \
    "    local x, y = string.byte(a, i), string.byte(b, i)\n"                                      \
    "    if x ~= y then\n"                                                                         \
    "      if x < y then return -1 end\n"                                                          \
    "      return 1\n"                                                                             \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  if #a < #b then return -1 end\n"                                                            \
    "  return 1\n"                                                                                 \
    "end\n"                                                                                        \
    /* 16 hex digits -> ms, counter (ms in two 24-bit halves: exact in a double) */                \
    "local function hlc_split(h)\n"                                                                \
    "  if type(h) ~= 'string' or #h ~= 16 or not string.match(h, '^[0-9a-f]+$') then\n"            \
    "    return nil\n"                                                                             \
    "  end\n"                                                                                      \
    "  return tonumber(string.sub(h, 1, 6), 16) * 16777216 +\n"                                    \
    "         tonumber(string.sub(h, 7, 12), 16),\n"                                               \
    "         tonumber(string.sub(h, 13, 16), 16)\n"                                               \
    "end\n"                                                                                        \
    "local function hlc_join(ms, c)\n"                                                             \
    "  return string.format('%06x%06x%04x', math.floor(ms / 16777216), ms % 16777216, c)\n"        \
    "end\n"                                                                                        \
    "local function hlc_less(m1, c1, m2, c2)\n"                                                    \
    "  return m1 < m2 or (m1 == m2 and c1 < c2)\n"                                                 \
    "end\n"                                                                                        \
    /* the HLC key as (ms, counter); nil when it holds something else */                           \
    "local function hlc_load(k)\n"                                                                 \
    "  local h = redis.call('GET', k)\n"                                                           \
    "  if not h then return 0, 0 end\n"                                                            \
    "  return hlc_split(h)\n"                                                                      \
    "end\n"                                                                                        \
    /* stamp text -> hex, site; nil when malformed */                                              \
    "local function stamp_split(s)\n"                                                              \
    "  local hex, site = string.match(s, '^([0-9a-f]+)%.([a-z0-9%-]+)$')\n"                        \
    "  if not hex or #hex ~= 16 or #site > 32 then return nil end\n"                               \
    "  return hex, site\n"                                                                         \
    "end\n"                                                                                        \
    /* vector text with SITE's counter + 1 (SITE added in byte order); nil if malformed */         \
    "local function vv_bump(vv, site)\n"                                                           \
    "  local out, done, prev = {}, false, nil\n"                                                   \
    "  if vv ~= '' then\n"                                                                         \
    "    for ent in string.gmatch(vv .. ';', '([^;]*);') do\n"                                     \
    "      local s, c = string.match(ent, '^([a-z0-9%-]+)=(%d+)$')\n"                              \
    "      if not s or (prev and bcmp(prev, s) >= 0) then return nil end\n"                        \
    "      prev = s\n"                                                                             \
    "      if not done and bcmp(site, s) < 0 then\n"                                               \
    "        out[#out + 1] = site .. '=1'\n"                                                       \
    "        done = true\n"                                                                        \
    "      end\n"                                                                                  \
    "      if s == site then\n"                                                                    \
    "        ent = s .. '=' .. string.format('%d', tonumber(c) + 1)\n"                             \
    "        done = true\n"                                                                        \
    "      end\n"                                                                                  \
    "      out[#out + 1] = ent\n"                                                                  \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  if not done then out[#out + 1] = site .. '=1' end\n"                                        \
    "  return table.concat(out, ';')\n"                                                            \
    "end\n"                                                                                        \
    /* the index entry: exists, st, vv, del, etag, size, tst, tags */                              \
    "local function entry(k)\n"                                                                    \
    "  local h = redis.call('HMGET', k, 'st', 'vv', 'del', 'etag', 'size', 'tst', 'tags')\n"       \
    "  local e = {tostring(redis.call('EXISTS', k))}\n"                                            \
    "  for i = 1, 7 do e[i + 1] = h[i] or '' end\n"                                                \
    "  return e\n"                                                                                 \
    "end\n"                                                                                        \
    /* ARGV[from..] field/value pairs (mutation_encode) -> table */                                \
    "local function fields(a, from)\n"                                                             \
    "  local f = {}\n"                                                                             \
    "  for i = from, #a - 1, 2 do f[a[i]] = a[i + 1] end\n"                                        \
    "  return f\n"                                                                                 \
    "end\n"                                                                                        \
    /* writes mutation F into index K; with GUARD only registers F's stamp is newer than.          \
     * Returns true when the mutation's own register (data, or tags for a tags op) changed. */     \
    "local function index_apply(k, f, guard)\n"                                                    \
    "  local st, data, tags = f['stamp'], true, true\n"                                            \
    "  if guard then\n"                                                                            \
    "    local cur = redis.call('HMGET', k, 'st', 'tst')\n"                                        \
    "    data = bcmp(st, cur[1] or '') > 0\n"                                                      \
    "    tags = bcmp(st, cur[2] or '') > 0\n"                                                      \
    "  end\n"                                                                                      \
    "  if f['op'] == 'put' then\n"                                                                 \
    "    if data then\n"                                                                           \
    "      redis.call('HSET', k, 'st', st, 'vv', f['vv'] or '', 'del', '0',\n"                     \
    "                 'etag', f['etag'] or '', 'size', f['size'] or '-1')\n"                       \
    "    end\n"                                                                                    \
    "    if tags then redis.call('HSET', k, 'tst', st, 'tags', f['tags'] or '') end\n"             \
    "    return data\n"                                                                            \
    "  elseif f['op'] == 'delete' then\n"                                                          \
    "    if data then\n"                                                                           \
    "      redis.call('HSET', k, 'st', st, 'vv', f['vv'] or '', 'del', '1',\n"                     \
    "                 'etag', '', 'size', '0')\n"                                                  \
    "    end\n"                                                                                    \
    "    if tags then redis.call('HSET', k, 'tst', st, 'tags', '') end\n"                          \
    "    return data\n"                                                                            \
    "  end\n"                                                                                      \
    "  if tags then redis.call('HSET', k, 'tst', st, 'tags', f['tags'] or '') end\n"               \
    "  return tags\n"                                                                              \
    "end\n"                                                                                        \
    /* checks a commit's fields before anything is written */                                      \
    "local function fields_ok(f)\n"                                                                \
    "  local op = f['op']\n"                                                                       \
    "  return (op == 'put' or op == 'delete' or op == 'tags') and f['stamp'] ~= nil and\n"         \
    "         stamp_split(f['stamp']) ~= nil\n"                                                    \
    "end\n"

/*
 * begin_local
 * KEYS: hlc, index, lease, intents, open
 * ARGV: now_ms, site, holder, lease_ms, intent_score, intent_member
 * Lease held by another holder: BUSY, nothing written (the HLC does not move). Else mints
 * max(now_ms << 16, hlc + 1), takes the lease (SET PX), bumps SITE in the index vector and
 * ZADDs the intent, and ZADDs it to OPEN scored NOW_MS (a floor for the minted stamp's ms:
 * the tombstone horizon, replicator/gc.h). Returns the ten strings described above.
 */
static const char script_begin_local[] =
    SCRIPT_PRELUDE
    "local now = tonumber(ARGV[1])\n"
    "if not now or now < 0 or now >= 281474976710656 or now ~= math.floor(now) then\n"
    "  return redis.error_reply('S3TEE bad now_ms')\n"
    "end\n"
    "local e = entry(KEYS[2])\n"
    "local owner = redis.call('GET', KEYS[3])\n"
    "if owner and owner ~= ARGV[3] then\n"
    "  return {'BUSY', '', '', unpack(e)}\n"
    "end\n"
    "local ms, c = hlc_load(KEYS[1])\n"
    "if not ms then return redis.error_reply('S3TEE s3tee:hlc is not 16 hex digits') end\n"
    "local nv = vv_bump(e[3], ARGV[2])\n"
    "if not nv then return redis.error_reply('S3TEE malformed vv in the index') end\n"
    "c = c + 1\n"
    "if c > 65535 then\n"
    "  ms = ms + 1\n"
    "  c = 0\n"
    "end\n"
    "if now > ms then\n"
    "  ms = now\n"
    "  c = 0\n"
    "end\n"
    "if ms >= 281474976710656 then return redis.error_reply('S3TEE HLC exhausted') end\n"
    "local h = hlc_join(ms, c)\n"
    "redis.call('SET', KEYS[1], h)\n"
    "redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])\n"
    "redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])\n"
    "redis.call('ZADD', KEYS[5], now, ARGV[6])\n"
    "return {'GO', h .. '.' .. ARGV[2], nv, unpack(e)}\n";

/*
 * begin_replica
 * KEYS: hlc, index, lease
 * ARGV: now_ms, holder, lease_ms, stamp, max_offset_ms, register ("st", or "tst" for tags;
 *       "st=" for a repair, which rewrites the store with the index's own stamp)
 * FUTURE when the stamp's ms > now_ms + max_offset_ms (nothing written). Else the HLC moves
 * up to the stamp; STALE when the stamp is not newer than the register (for a repair: older
 * than it) (no lease); BUSY
 * when another holder has the lease; else the lease is taken: GO.
 */
static const char script_begin_replica[] =
    SCRIPT_PRELUDE
    "local now, off = tonumber(ARGV[1]), tonumber(ARGV[5])\n"
    "local hex = stamp_split(ARGV[4])\n"
    "if not hex or not now or not off then return redis.error_reply('S3TEE bad arguments') end\n"
    "local ims, ic = hlc_split(hex)\n"
    "if ims > now + off then\n"
    "  return {'FUTURE', ARGV[4], '', '0', '', '', '', '', '', '', ''}\n"
    "end\n"
    "local ms, c = hlc_load(KEYS[1])\n"
    "if not ms then return redis.error_reply('S3TEE s3tee:hlc is not 16 hex digits') end\n"
    "local e = entry(KEYS[2])\n"
    "local owner = redis.call('GET', KEYS[3])\n"
    "if hlc_less(ms, c, ims, ic) then redis.call('SET', KEYS[1], hex) end\n"
    "local cur, floor = e[2], 0\n"
    "if ARGV[6] == 'tst' then cur = e[7] end\n"
    "if ARGV[6] == 'st=' then floor = -1 end\n"
    "if bcmp(ARGV[4], cur) <= floor then\n"
    "  return {'STALE', ARGV[4], '', unpack(e)}\n"
    "end\n"
    "if owner and owner ~= ARGV[2] then\n"
    "  return {'BUSY', ARGV[4], '', unpack(e)}\n"
    "end\n"
    "redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])\n"
    "return {'GO', ARGV[4], '', unpack(e)}\n";

/*
 * renew_lease
 * KEYS: lease
 * ARGV: holder, lease_ms
 * PEXPIRE when the lease is HOLDER's. Returns 1 (held, extended) or 0.
 */
static const char script_renew_lease[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/*
 * check_lease
 * KEYS: lease
 * ARGV: holder, margin_ms
 * Returns 1 when HOLDER has the lease with at least margin_ms left, else 0.
 */
static const char script_check_lease[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "local t = redis.call('PTTL', KEYS[1])\n"
    "if t == -1 or t >= tonumber(ARGV[2]) then return 1 end\n"
    "return 0\n";

/*
 * commit_local
 * KEYS: index, lease, intents, log, repair, open
 * ARGV: holder, intent_member, then the mutation's field/value pairs (mutation_encode)
 * Error reply "S3TEE lease lost" when HOLDER no longer has the lease (nothing written but
 * the key in the repair set: the store took this write, and another writer may have
 * committed in between, so the store may now hold an older stamp than the index).
 * Else updates the index (put: data and tags; delete: data, tags cleared; tags: tags only),
 * XADDs the pairs to the log, ZREMs the intent (from intents and open), DELs the lease.
 * Returns the stream id.
 */
static const char script_commit_local[] =
    SCRIPT_PRELUDE
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then\n"
    "  redis.call('ZADD', KEYS[5], 'NX', 0, string.sub(KEYS[1], 9))\n"
    "  return redis.error_reply('S3TEE lease lost')\n"
    "end\n"
    "local f = fields(ARGV, 3)\n"
    "if not fields_ok(f) then return redis.error_reply('S3TEE bad mutation') end\n"
    "index_apply(KEYS[1], f, false)\n"
    "local id = redis.call('XADD', KEYS[4], '*', unpack(ARGV, 3))\n"
    "redis.call('ZREM', KEYS[3], ARGV[2])\n"
    "redis.call('ZREM', KEYS[6], ARGV[2])\n"
    "redis.call('DEL', KEYS[2])\n"
    "return id\n";

/*
 * commit_replica
 * KEYS: index, lease, repair
 * ARGV: holder, then the mutation's field/value pairs
 * Updates each register (data, tags) only where the stamp is newer than the index's, DELs
 * the lease when HOLDER's, never XADDs. Returns 1 when the mutation's register changed;
 * else (a write that took the lease at begin_replica but lost it before this, or a repair
 * rewriting the index's own stamp) the key goes to the repair set, to be checked.
 */
static const char script_commit_replica[] =
    SCRIPT_PRELUDE
    "local f = fields(ARGV, 2)\n"
    "if not fields_ok(f) then return redis.error_reply('S3TEE bad mutation') end\n"
    "local applied = index_apply(KEYS[1], f, true)\n"
    "if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end\n"
    "if applied then return 1 end\n"
    "redis.call('ZADD', KEYS[3], 'NX', 0, string.sub(KEYS[1], 9))\n"
    "return 0\n";

/*
 * release
 * KEYS: lease, intents, open
 * ARGV: holder, intent_member
 * DELs the lease when HOLDER's, ZREMs the intent (from intents and open). Returns 1.
 */
static const char script_release[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
    "redis.call('ZREM', KEYS[2], ARGV[2])\n"
    "redis.call('ZREM', KEYS[3], ARGV[2])\n"
    "return 1\n";

/*
 * settle_intent - a replicator settles an intent a proxy left behind (died between the
 * store's answer and commit_local). Idempotent: several replicators may run it for one
 * intent.
 * KEYS: index, lease, intents, log, hlc, repair, open
 * ARGV: intent_member, now_ms, site, op, bucket, key, expect_st, found, stamp, vv, etag, size,
 *       tags (the store's tag set of a found put, URL-encoded)
 * GONE when the intent is no longer there (nothing written); BUSY when the key's lease is
 * held (a live writer; nothing written). Else:
 *   put, found, STAMP newer than the index's st: updates the index (TAGS, tst = STAMP
 *   where newer), XADDs the put mutation with TAGS, ZREMs: LOGGED.
 *   delete, not found, the index not a tombstone and its st still EXPECT_ST (no write
 *   landed since the caller looked): mints max(now << 16, hlc + 1) like begin_local,
 *   bumps SITE in the index vector, writes the tombstone, XADDs the delete, ZREMs: LOGGED.
 *   anything else (tags, a write that never landed, a newer one there): ZREM: DROPPED;
 *   a put whose STAMP is older than the index's also puts the key in the repair set (it
 *   landed after a newer write: the store shows the older one).
 */
static const char script_settle_intent[] =
    SCRIPT_PRELUDE
    "if not redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 'GONE' end\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then return 'BUSY' end\n"
    "local now = tonumber(ARGV[2])\n"
    "if not now or now < 0 or now >= 281474976710656 or now ~= math.floor(now) then\n"
    "  return redis.error_reply('S3TEE bad now_ms')\n"
    "end\n"
    "local e = entry(KEYS[1])\n"
    "local op, found = ARGV[4], ARGV[8] == '1'\n"
    "local f = nil\n"
    "if op == 'put' and found and stamp_split(ARGV[9]) and bcmp(ARGV[9], e[2]) > 0 then\n"
    "  f = {'op', 'put', 'bucket', ARGV[5], 'key', ARGV[6], 'stamp', ARGV[9], 'vv', ARGV[10],\n"
    "       'etag', ARGV[11], 'size', ARGV[12], 'tags', ARGV[13] or '', 'parts', '',\n"
    "       'time', ARGV[2]}\n"
    "elseif op == 'delete' and not found and e[4] ~= '1' and e[2] == ARGV[7] then\n"
    "  local ms, c = hlc_load(KEYS[5])\n"
    "  if not ms then return redis.error_reply('S3TEE s3tee:hlc is not 16 hex digits') end\n"
    "  local nv = vv_bump(e[3], ARGV[3])\n"
    "  if not nv then return redis.error_reply('S3TEE malformed vv in the index') end\n"
    "  c = c + 1\n"
    "  if c > 65535 then\n"
    "    ms = ms + 1\n"
    "    c = 0\n"
    "  end\n"
    "  if now > ms then\n"
    "    ms = now\n"
    "    c = 0\n"
    "  end\n"
    "  if ms >= 281474976710656 then return redis.error_reply('S3TEE HLC exhausted') end\n"
    "  local h = hlc_join(ms, c)\n"
    "  redis.call('SET', KEYS[5], h)\n"
    "  f = {'op', 'delete', 'bucket', ARGV[5], 'key', ARGV[6], 'stamp', h .. '.' .. ARGV[3],\n"
    "       'vv', nv, 'etag', '', 'size', '-1', 'tags', '', 'parts', '', 'time', ARGV[2]}\n"
    "end\n"
    "redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "redis.call('ZREM', KEYS[7], ARGV[1])\n"
    "if not f and op == 'put' and found and stamp_split(ARGV[9]) and bcmp(ARGV[9], e[2]) < 0 then\n"
    "  redis.call('ZADD', KEYS[6], 'NX', 0, string.sub(KEYS[1], 9))\n"
    "end\n"
    "if not f then return 'DROPPED' end\n"
    "index_apply(KEYS[1], fields(f, 1), true)\n"
    "redis.call('XADD', KEYS[4], '*', unpack(f))\n"
    "return 'LOGGED'\n";

#endif
