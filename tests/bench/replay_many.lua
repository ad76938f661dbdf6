-- replay_many.lua - wrk script: cycles through many pre-signed requests, one key each.
--
-- replay.lua sends one request again and again; a write benchmark of a replicated bucket
-- cannot, because writes to one key wait for each other (the per-key lease). repl.py
-- signs N requests for N different keys and writes them, fully formatted, to one file;
-- each wrk thread starts at its own offset and steps by the thread count, so no two
-- threads send the same key until the list wraps around.
--
-- BENCH_MANY names the file: records "<length>\n<raw request bytes>", back to back.
-- done() prints one line "BENCH key=value ..." in the format of replay.lua.

local path = os.getenv("BENCH_MANY")
if path == nil then
   error("replay_many.lua: set BENCH_MANY")
end

local threads = {}
local nthreads = 0

setup = function(thread)
   thread:set("tid", nthreads)
   table.insert(threads, thread)
   nthreads = nthreads + 1
end

local reqs = nil
local pos = 0
local step = 1

init = function(args)
   local f = assert(io.open(path, "rb"))
   reqs = {}
   while true do
      local line = f:read("*l")
      if line == nil then
         break
      end
      local n = tonumber(line)
      table.insert(reqs, f:read(n))
   end
   f:close()
   pos = tid
   step = tonumber(os.getenv("BENCH_THREADS") or "1")
end

request = function()
   local r = reqs[(pos % #reqs) + 1]
   pos = pos + step
   return r
end

done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d bytes=%d err_connect=%d err_read=%d " ..
      "err_write=%d err_status=%d err_timeout=%d " ..
      "lat_mean_us=%.1f lat_p50_us=%d lat_p90_us=%d lat_p99_us=%d lat_max_us=%d\n",
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max))
end
